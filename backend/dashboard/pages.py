"""Rendering a dashboard page: the template, the navigation for the caller's role, no caching."""

from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
from litestar.response import Template

from backend.dashboard.plots import UTC_ZONE, clock_face
from backend.identity.principal import Principal
from backend.identity.roles import Role
from backend.lib.errors import DomainError, InvalidInput, PreconditionFailed

# Who uses the dashboard: the people who act on alerts and run the clinic (DESIGN §8).
DASHBOARD_ROLES: Final = (Role.CLINICIAN, Role.CLINIC_ADMIN)


# After the service's reason when a form's page was outdated: the page re-rendered is current.
_OUTDATED: Final = (
    "Nothing was saved: someone else saved a change first. "
    "This page now shows the current version; re-apply your change to it if still needed."
)


def refusal_reason(error: DomainError) -> str:
    """What a page shows beside a form whose change was refused: the service's reason (written
    to be shown, never PHI), what was wrong with each field, and for an outdated page what to do."""
    message = error.detail
    details = [p.message for p in error.errors]
    if details:
        message += ": " + "; ".join(details)
    if isinstance(error, PreconditionFailed):
        message = f"{message}. {_OUTDATED}"
    return message


def time_context(zone: ZoneInfo | None) -> dict[str, Any]:
    """What the ``when`` macro reads from a page's context (the clinic's zone; UTC without one)."""
    return {"clinic_zone": zone or UTC_ZONE, "clock_face": clock_face}


_FORM_TIME: Final = "%Y-%m-%dT%H:%M"


def form_time(at: datetime | None, zone: ZoneInfo) -> str:
    """A stored instant as a form's ``datetime-local`` value in ``zone`` (what `local_time`
    reads back); empty for None."""
    return "" if at is None else at.astimezone(zone).strftime(_FORM_TIME)


def local_time(value: str, zone: ZoneInfo, what: str) -> datetime:
    """A form's ``datetime-local`` value (no offset), read in ``zone`` (the patient's, for
    the session forms)."""
    try:
        naive = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{what}: give a date and a time") from None
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=zone)


class NavItem(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    label: str
    href: str
    current: bool = False


_NAV: Final = (
    ("inbox", "Alert inbox", "/dashboard/", None),
    ("patients", "Patients", "/dashboard/patients", None),
    ("clinic", "Clinic today", "/dashboard/clinic", None),
    ("admin", "Admin", "/dashboard/admin", Role.CLINIC_ADMIN),
)
_ROLE_LABELS: Final = {Role.CLINICIAN: "Clinician", Role.CLINIC_ADMIN: "Clinic admin"}


def navigation(principal: Principal, current: str) -> list[NavItem]:
    return [
        NavItem(key=key, label=label, href=href, current=key == current)
        for key, label, href, needs in _NAV
        if needs is None or principal.role is needs
    ]


def page(
    template_name: str,
    principal: Principal,
    *,
    current: str,
    status_code: int = 200,
    zone: ZoneInfo | None = None,
    **context: Any,
) -> Template:
    """``zone``: the clinic's, in which the page shows times (named, so UTC is never mistaken for
    local time)."""
    return Template(
        template_name=template_name,
        context={
            **time_context(zone),
            "nav": navigation(principal, current),
            "current_page": current,
            "role_label": _ROLE_LABELS.get(principal.role, principal.role.value),
            **context,
        },
        status_code=status_code,
    )
