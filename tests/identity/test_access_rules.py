"""The access decision, exhaustively over roles, scopes and whose patient it is (pure)."""

import itertools
from uuid import uuid4

import pytest

from backend.identity.access import (
    AccessRule,
    Denial,
    Scope,
    access,
    decide,
    decide_patient,
    rule_of,
)
from backend.identity.principal import Principal
from backend.identity.roles import Role
from backend.identity.tokens import Audience, Stage

CLINIC = uuid4()
OTHER_CLINIC = uuid4()


def _principal(role: Role, *, stage: Stage = Stage.FULL) -> Principal:
    return Principal(
        subject_id=uuid4(),
        role=role,
        clinic_id=None if role is Role.OPERATOR else CLINIC,
        session_id=uuid4(),
        stage=stage,
    )


@pytest.mark.parametrize(
    ("roles", "scope"),
    [
        ({Role.RESEARCHER}, Scope.PATIENT),
        ({Role.OPERATOR}, Scope.PATIENT),
        ({Role.OPERATOR}, Scope.CLINIC),
        ({Role.PATIENT}, Scope.CLINIC),
        ({Role.CLINICIAN}, Scope.EXPORT),
        ({Role.CLINICIAN}, Scope.SERVICE),
        (set(), Scope.SELF),
    ],
)
def test_rules_that_design_forbids_fail_at_definition(roles: set[Role], scope: Scope) -> None:
    with pytest.raises(ValueError, match="role"):
        AccessRule(roles=frozenset(roles), scope=scope)


def test_access_builds_the_route_opt() -> None:
    opt = access(Role.CLINICIAN, Role.PATIENT, scope=Scope.PATIENT)
    rule = rule_of(opt)
    assert rule is not None
    assert rule.audiences == {Audience.STAFF, Audience.PATIENT}
    assert rule_of({}) is None


@pytest.mark.parametrize(("role", "scope"), list(itertools.product(Role, Scope)))
def test_role_outside_the_rule_is_denied_inside_is_allowed(role: Role, scope: Scope) -> None:
    allowed_roles = {
        Scope.SELF: set(Role),
        Scope.CLINIC: {Role.CLINICIAN, Role.CLINIC_ADMIN, Role.RESEARCHER},
        Scope.PATIENT: {Role.PATIENT, Role.CLINICIAN, Role.CLINIC_ADMIN},
        Scope.EXPORT: {Role.RESEARCHER, Role.CLINIC_ADMIN},
        Scope.SERVICE: {Role.OPERATOR},
    }[scope]
    for rule_roles in (allowed_roles, allowed_roles - {role}):
        if not rule_roles:
            continue
        rule = AccessRule(roles=frozenset(rule_roles), scope=scope)
        expected = None if role in rule_roles else Denial.ROLE
        assert decide(rule, _principal(role)) == expected


def test_enrolment_stage_reaches_only_routes_that_allow_it() -> None:
    pending = _principal(Role.CLINIC_ADMIN, stage=Stage.TOTP_ENROLMENT)
    normal = AccessRule(roles=frozenset({Role.CLINIC_ADMIN}), scope=Scope.SELF)
    enrol = AccessRule(
        roles=frozenset({Role.CLINIC_ADMIN}), scope=Scope.SELF, allow_totp_enrolment=True
    )
    assert decide(normal, pending) is Denial.TOTP_ENROLMENT_PENDING
    assert decide(enrol, pending) is None


def test_patient_reaches_only_themself() -> None:
    me = _principal(Role.PATIENT)
    assert decide_patient(me, me.subject_id, CLINIC) is None
    assert decide_patient(me, uuid4(), CLINIC) is Denial.OTHER_PATIENT


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.CLINIC_ADMIN])
def test_staff_reach_only_their_clinics_patients(role: Role) -> None:
    staff = _principal(role)
    assert decide_patient(staff, uuid4(), CLINIC) is None
    assert decide_patient(staff, uuid4(), OTHER_CLINIC) is Denial.OTHER_CLINIC
    assert decide_patient(staff, uuid4(), None) is Denial.UNKNOWN_PATIENT
