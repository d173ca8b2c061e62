"""Rendering a dashboard page: the template, the navigation for the caller's role, no caching."""

from typing import Any, Final

import msgspec
from litestar.response import Template

from backend.identity.principal import Principal
from backend.identity.roles import Role

# Who uses the dashboard: the people who act on alerts and run the clinic (DESIGN §8).
DASHBOARD_ROLES: Final = (Role.CLINICIAN, Role.CLINIC_ADMIN)


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
    **context: Any,
) -> Template:
    return Template(
        template_name=template_name,
        context={
            "nav": navigation(principal, current),
            "current_page": current,
            "role_label": _ROLE_LABELS.get(principal.role, principal.role.value),
            **context,
        },
        status_code=status_code,
    )
