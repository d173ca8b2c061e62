"""Every HTTP route of the service, in one list the app factory mounts.

Each domain area adds its controllers here (one line each). Routes that need no authentication
say so explicitly with ``opt={"public": True}``; every other route must carry a guard.
"""

from litestar.types import ControllerRouterHandler

from backend.dashboard.router import DASHBOARD_ROUTER, DASHBOARD_STATIC_ROUTER
from backend.domain.alerts.controllers import (
    AlertController,
    AlertSettingsController,
    N2OHoldController,
)
from backend.domain.check_ins.controllers import ClinicProtocolController
from backend.domain.exports.controllers import ExportController
from backend.domain.fallback.tasks import StaffTaskController
from backend.domain.preferences.controllers import (
    PatientPreferencesController,
    StaffPreferencesController,
)
from backend.domain.questionnaires.controllers import (
    FhirQuestionnaireController,
    QuestionnaireController,
)
from backend.domain.receipts.controllers import NotificationReceiptController
from backend.domain.responses.controllers import (
    FhirQuestionnaireResponseController,
    ResponseController,
)
from backend.domain.safety.controllers import (
    CrisisAcknowledgementController,
    CrisisResourcesController,
)
from backend.domain.sessions.controllers import (
    PatientCheckInController,
    TreatmentSessionController,
)
from backend.identity.controllers import (
    ClinicAdminController,
    PatientAppController,
    PatientController,
    SessionController,
)
from backend.identity.staff_admin_controllers import StaffAdminController
from backend.system.health import HealthController
from backend.system.metrics import metrics

ROUTE_HANDLERS: list[ControllerRouterHandler] = [
    HealthController,
    metrics,
    QuestionnaireController,
    FhirQuestionnaireController,
    ResponseController,
    FhirQuestionnaireResponseController,
    SessionController,
    ClinicAdminController,
    StaffAdminController,
    PatientController,
    PatientAppController,
    TreatmentSessionController,
    PatientCheckInController,
    NotificationReceiptController,
    ClinicProtocolController,
    PatientPreferencesController,
    StaffPreferencesController,
    StaffTaskController,
    AlertController,
    N2OHoldController,
    AlertSettingsController,
    CrisisResourcesController,
    CrisisAcknowledgementController,
    ExportController,
    DASHBOARD_ROUTER,
    DASHBOARD_STATIC_ROUTER,
]
