"""Who is calling: built from a verified access token by ``AccessControlMiddleware``."""

from typing import Any, Final
from uuid import UUID

import msgspec
from litestar import Request
from litestar.di import Provide

from backend.identity.roles import Role
from backend.identity.tokens import AccessClaims, Stage
from backend.lib.errors import Unauthorized


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    subject_id: UUID
    """The staff member's or the patient's id."""
    role: Role
    clinic_id: UUID | None
    session_id: UUID
    """The refresh-token family this access token was issued under (one login or one device)."""
    device_id: UUID | None = None
    stage: Stage = Stage.FULL
    token_id: str = ""

    @property
    def is_patient(self) -> bool:
        return self.role is Role.PATIENT


def principal_from_claims(claims: AccessClaims) -> Principal:
    return Principal(
        subject_id=UUID(claims.sub),
        role=Role(claims.role),
        clinic_id=UUID(claims.clinic) if claims.clinic is not None else None,
        session_id=UUID(claims.sid),
        device_id=UUID(claims.dev) if claims.dev is not None else None,
        stage=Stage(claims.stage),
        token_id=claims.jti,
    )


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        # Only reachable on a public route that asks for a principal: a programming error.
        raise Unauthorized("this request carries no verified access token")
    return user


PRINCIPAL_DEPENDENCIES: Final = {"principal": Provide(provide_principal, sync_to_thread=False)}
