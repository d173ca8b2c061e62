"""Who may do what, by role (DESIGN §8)."""

from enum import StrEnum
from typing import Final


class Role(StrEnum):
    PATIENT = "patient"
    CLINICIAN = "clinician"
    CLINIC_ADMIN = "clinic_admin"
    RESEARCHER = "researcher"
    OPERATOR = "operator"


STAFF_ROLES: Final = frozenset({Role.CLINICIAN, Role.CLINIC_ADMIN, Role.RESEARCHER, Role.OPERATOR})
# Roles a clinic admin may create: operators run the service and are made on the command line.
CLINIC_STAFF_ROLES: Final = frozenset({Role.CLINICIAN, Role.CLINIC_ADMIN, Role.RESEARCHER})
# Accounts that can change who has access or reach every clinic always need a second factor.
TOTP_ALWAYS_REQUIRED: Final = frozenset({Role.CLINIC_ADMIN, Role.OPERATOR})


def totp_required(role: Role, *, clinic_requires_totp_for_all_staff: bool) -> bool:
    """Whether a staff member of ``role`` must present a TOTP code to log in."""
    if role is Role.PATIENT:
        return False
    return role in TOTP_ALWAYS_REQUIRED or clinic_requires_totp_for_all_staff
