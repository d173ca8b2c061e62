"""The declarative access rule every route carries, and the pure decision it leads to.

A route says who may call it and over what: ``opt=access(Role.CLINICIAN, scope=Scope.PATIENT)``.
``AccessControlMiddleware`` enforces it before the handler runs; a route with neither a rule nor
``opt={"public": True}`` is refused for everyone (deny by default), and the authorisation matrix
test fails for it. The rule's constructor refuses combinations DESIGN §8 forbids (a researcher or an
operator on a route that reads one patient's data), so a wrong rule fails at import, not in use.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from backend.identity.principal import Principal
from backend.identity.roles import STAFF_ROLES, Role
from backend.identity.tokens import Audience, Stage

ACCESS_OPT_KEY: Final = "access"
PUBLIC_OPT_KEY: Final = "public"
# The route parameter that names the patient a PATIENT-scoped route acts on.
PATIENT_PATH_PARAMETER: Final = "patient_id"


class Scope(StrEnum):
    SELF = "self"
    """The caller's own account, session or device (``/me``, logout, TOTP enrolment)."""
    CLINIC = "clinic"
    """Staff acting inside their own clinic (staff, care teams, patient lists and searches)."""
    PATIENT = "patient"
    """One patient named by ``{patient_id}``: a patient only themself, staff only their clinic's."""
    EXPORT = "export"
    """De-identified research output of the caller's clinic; never identified data."""
    SERVICE = "service"
    """Running the service (operators): no patient data at all."""


# Who may ever appear on a route of each scope (DESIGN §8).
_ROLES_ALLOWED_IN_SCOPE: Final[Mapping[Scope, frozenset[Role]]] = {
    Scope.SELF: frozenset(Role),
    Scope.CLINIC: frozenset({Role.CLINICIAN, Role.CLINIC_ADMIN, Role.RESEARCHER}),
    Scope.PATIENT: frozenset({Role.PATIENT, Role.CLINICIAN, Role.CLINIC_ADMIN}),
    Scope.EXPORT: frozenset({Role.RESEARCHER, Role.CLINIC_ADMIN}),
    Scope.SERVICE: frozenset({Role.OPERATOR}),
}


class Denial(StrEnum):
    """Why an authenticated caller was refused (an audit reason, never shown in detail)."""

    ROLE = "role_not_allowed"
    TOTP_ENROLMENT_PENDING = "totp_enrolment_pending"
    NO_CLINIC = "no_clinic"
    OTHER_PATIENT = "other_patient"
    OTHER_CLINIC = "other_clinic"
    UNKNOWN_PATIENT = "unknown_patient"


@dataclass(frozen=True, slots=True)
class AccessRule:
    roles: frozenset[Role]
    scope: Scope
    # Tokens from a password-only login of an account that must still enrol TOTP reach only
    # routes that say so (the enrolment routes themselves).
    allow_totp_enrolment: bool = False
    # The handler checks that a patient's session is still live in a statement it runs anyway
    # (the submission routes: `responses.repository.submission_context`), so the access check
    # does not read it a second time on the hottest path.
    session_checked_by_handler: bool = False

    def __post_init__(self) -> None:
        if not self.roles:
            msg = "an access rule names at least one role"
            raise ValueError(msg)
        outside = self.roles - _ROLES_ALLOWED_IN_SCOPE[self.scope]
        if outside:
            names = ", ".join(sorted(outside))
            msg = f"roles {names} may not use a {self.scope.value}-scoped route"
            raise ValueError(msg)

    @property
    def audiences(self) -> frozenset[Audience]:
        found = set()
        if Role.PATIENT in self.roles:
            found.add(Audience.PATIENT)
        if self.roles & STAFF_ROLES:
            found.add(Audience.STAFF)
        return frozenset(found)


def access(
    *roles: Role,
    scope: Scope,
    allow_totp_enrolment: bool = False,
    session_checked_by_handler: bool = False,
) -> dict[str, Any]:
    """The ``opt`` of a route: ``@get(..., opt=access(Role.CLINICIAN, scope=Scope.CLINIC))``."""
    return {
        ACCESS_OPT_KEY: AccessRule(
            roles=frozenset(roles),
            scope=scope,
            allow_totp_enrolment=allow_totp_enrolment,
            session_checked_by_handler=session_checked_by_handler,
        )
    }


def rule_of(opt: Mapping[str, Any]) -> AccessRule | None:
    rule = opt.get(ACCESS_OPT_KEY)
    return rule if isinstance(rule, AccessRule) else None


def is_public(opt: Mapping[str, Any]) -> bool:
    return opt.get(PUBLIC_OPT_KEY) is True


def decide(rule: AccessRule, principal: Principal) -> Denial | None:
    """Everything but the patient's clinic, which needs a lookup (``decide_patient``)."""
    if principal.role not in rule.roles:
        return Denial.ROLE
    if principal.stage is Stage.TOTP_ENROLMENT and not rule.allow_totp_enrolment:
        return Denial.TOTP_ENROLMENT_PENDING
    if rule.scope in {Scope.CLINIC, Scope.EXPORT, Scope.PATIENT} and principal.clinic_id is None:
        return Denial.NO_CLINIC
    return None


def decide_patient(
    principal: Principal, patient_id: UUID, patient_clinic_id: UUID | None
) -> Denial | None:
    """A PATIENT-scoped route: ``patient_clinic_id`` is the named patient's clinic (None: no such
    patient). A patient reaches only themself; staff only patients of their own clinic."""
    if principal.role is Role.PATIENT:
        return None if patient_id == principal.subject_id else Denial.OTHER_PATIENT
    if patient_clinic_id is None:
        return Denial.UNKNOWN_PATIENT
    if patient_clinic_id != principal.clinic_id:
        return Denial.OTHER_CLINIC
    return None
