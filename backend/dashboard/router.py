"""The dashboard's routes under ``/dashboard``, its static files, and its template engine."""

from pathlib import Path
from typing import Final

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from backend.dashboard.admin import DashboardAdminController
from backend.dashboard.auth import DashboardAuthController
from backend.dashboard.clinic import DashboardClinicController
from backend.dashboard.csrf import DashboardCsrfMiddleware
from backend.dashboard.errors import DASHBOARD_EXCEPTION_HANDLERS
from backend.dashboard.inbox import DashboardInboxController
from backend.dashboard.patients import DashboardPatientController
from backend.dashboard.session import DASHBOARD_PATH, STATIC_PATH
from backend.dashboard.totp_enrolment import DashboardTotpController

_HERE: Final = Path(__file__).parent
TEMPLATE_DIRECTORY: Final = _HERE / "templates"
STATIC_DIRECTORY: Final = _HERE / "static"

DASHBOARD_ROUTER: Final = Router(
    path=DASHBOARD_PATH,
    route_handlers=[
        DashboardAuthController,
        DashboardInboxController,
        DashboardPatientController,
        DashboardClinicController,
        DashboardAdminController,
        DashboardTotpController,
    ],
    middleware=[DashboardCsrfMiddleware()],
    exception_handlers=DASHBOARD_EXCEPTION_HANDLERS,
    include_in_schema=False,
)

DASHBOARD_STATIC_ROUTER: Final = create_static_files_router(
    path=STATIC_PATH,
    directories=[STATIC_DIRECTORY],
    name="dashboard-static",
    opt={"public": True},
    include_in_schema=False,
    cache_control=CacheControlHeader(max_age=300, private=True),
)


def dashboard_template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=TEMPLATE_DIRECTORY, engine=JinjaTemplateEngine)
