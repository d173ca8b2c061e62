"""A clinic's crisis resources per locale (clinical-spec §5.3 rule 2: "locale-specific resources
... configurable per clinic; verify numbers per country", "the clinic's own contact").

Look-up for a patient's locale, first found wins: the clinic's entry for the exact locale
("es-US"), for its language ("es"), the clinic's "default" entry, then the shipped defaults for
the locale's region (`crisis_resources.json`). Entries are clinic configuration (no PHI), set and
removed by the clinic admin, every change audited.
"""

import re
import uuid
from datetime import datetime
from typing import Annotated, Final, Literal, cast

import msgspec
from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db.models.crisis_resources import ClinicCrisisResources
from backend.domain.alerts.auditing import audit_alert_event
from backend.domain.safety.crisis import (
    CrisisCatalogue,
    CrisisResource,
    default_catalogue,
    region_for_locale,
)
from backend.identity.principal import Principal
from backend.lib.errors import InvalidInput, NotFound
from backend.lib.ids import uuid7
from backend.lib.preconditions import lock_clinic, require_current

TABLE: Final = cast(Table, ClinicCrisisResources.__table__)  # type: ignore[attr-defined]
_c = TABLE.c

CLINIC_DEFAULT: Final = "default"
_LOCALE: Final = re.compile(r"^(?P<language>[a-z]{2,3})(?:-(?P<region>[a-z]{2}|[0-9]{3}))?$")
_PHONE: Final = r"^[0-9A-Za-z+()#*./ -]{1,40}$"

Source = Literal["clinic", "default"]


class ResourceInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    phone: Annotated[str, msgspec.Meta(pattern=_PHONE)]
    """A number to call or text ("988", "116 123", "text HOME to 741741" is a label + "741741")."""


class CrisisResourcesInput(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    headline: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    resources: Annotated[tuple[ResourceInput, ...], msgspec.Meta(min_length=1, max_length=10)]
    clinic_contact: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class CrisisContent(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The crisis screen's content for one locale, and where it came from."""

    locale: str
    """The entry that answered: a clinic locale key, or the shipped region ("GB", "INTL")."""
    source: Source
    headline: str
    resources: tuple[CrisisResource, ...]
    clinic_contact: str | None
    version: str


class ClinicCrisisEntries(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    entries: list[CrisisContent]
    defaults_version: str


def normalise_locale(locale: str) -> str:
    """ "en_gb" → "en-GB"; "default" stays; anything else is InvalidInput."""
    key = locale.strip().replace("_", "-").lower()
    if key == CLINIC_DEFAULT:
        return key
    match = _LOCALE.match(key)
    if match is None:
        raise InvalidInput(
            'locale must be a language with an optional region ("en", "en-GB", "es-419") '
            'or "default"'
        )
    region = match.group("region")
    return match.group("language") + (f"-{region.upper()}" if region else "")


def _candidates(locale: str | None) -> list[str]:
    keys: list[str] = []
    if locale:
        try:
            exact = normalise_locale(locale)
        except InvalidInput:
            exact = None  # a malformed stored locale still gets the clinic's default
        if exact is not None and exact != CLINIC_DEFAULT:
            keys.append(exact)
            language = exact.split("-")[0]
            if language != exact:
                keys.append(language)
    keys.append(CLINIC_DEFAULT)
    return keys


def _content(row: object) -> CrisisContent:
    return CrisisContent(
        locale=row.locale,  # type: ignore[attr-defined]
        source="clinic",
        headline=row.headline,  # type: ignore[attr-defined]
        resources=tuple(
            CrisisResource(label=r["label"], phone=r["phone"])
            for r in row.resources  # type: ignore[attr-defined]
        ),
        clinic_contact=row.clinic_contact,  # type: ignore[attr-defined]
        version=f"clinic-{row.version}",  # type: ignore[attr-defined]
    )


def shipped_content(locale: str | None, catalogue: CrisisCatalogue | None = None) -> CrisisContent:
    catalogue = catalogue or default_catalogue()
    region = region_for_locale(locale, catalogue)
    shipped = catalogue.regions[region]
    return CrisisContent(
        locale=region,
        source="default",
        headline=shipped.headline,
        resources=shipped.resources,
        clinic_contact=None,
        version=catalogue.version,
    )


async def crisis_content(
    connection: AsyncConnection, clinic_id: uuid.UUID, locale: str | None
) -> CrisisContent:
    """What the clinic's patient with ``locale`` sees: the clinic's entry, else the defaults."""
    keys = _candidates(locale)
    rows = (
        await connection.execute(
            select(TABLE).where(_c.clinic_id == clinic_id, _c.locale.in_(keys))
        )
    ).all()
    by_key = {row.locale: row for row in rows}
    for key in keys:
        if key in by_key:
            return _content(by_key[key])
    return shipped_content(locale)


async def list_entries(session: AsyncSession, clinic_id: uuid.UUID) -> ClinicCrisisEntries:
    connection = await session.connection()
    rows = (
        await connection.execute(select(TABLE).where(_c.clinic_id == clinic_id).order_by(_c.locale))
    ).all()
    return ClinicCrisisEntries(
        entries=[_content(row) for row in rows], defaults_version=default_catalogue().version
    )


async def effective_for(session: AsyncSession, clinic_id: uuid.UUID, locale: str) -> CrisisContent:
    key = normalise_locale(locale)
    connection = await session.connection()
    return await crisis_content(connection, clinic_id, None if key == CLINIC_DEFAULT else key)


async def save_entry(
    session: AsyncSession,
    principal: Principal,
    clinic_id: uuid.UUID,
    locale: str,
    data: CrisisResourcesInput,
    *,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> CrisisContent:
    """Create or replace the clinic's entry for ``locale`` (its version counts up).
    PreconditionFailed if ``if_match`` (entity tags of what a GET of the locale showed) no longer
    names what a patient with this locale sees."""
    key = normalise_locale(locale)
    # Always under the clinic's lock: two first saves of a locale must not both insert either.
    await lock_clinic(session, clinic_id)
    if if_match is not None:
        current = await effective_for(session, clinic_id, key)
        require_current(if_match, current, "the crisis resources of this locale")
    headline = data.headline.strip()
    listed = [{"label": r.label.strip(), "phone": r.phone.strip()} for r in data.resources]
    if not headline or any(not r["label"] or not r["phone"] for r in listed):
        raise InvalidInput("headline, labels and numbers must not be blank")
    values = {
        "headline": headline,
        "resources": listed,
        "clinic_contact": (data.clinic_contact or "").strip() or None,
        "updated_at": now,
        "updated_by": principal.subject_id,
    }
    connection = await session.connection()
    existing = (
        await connection.execute(
            select(_c.id, _c.version).where(_c.clinic_id == clinic_id, _c.locale == key)
        )
    ).first()
    if existing is None:
        entry_id = uuid7()
        await connection.execute(
            TABLE.insert().values(id=entry_id, clinic_id=clinic_id, locale=key, version=1, **values)
        )
    else:
        entry_id = existing.id
        await connection.execute(
            TABLE.update().where(_c.id == entry_id).values(version=existing.version + 1, **values)
        )
    await audit_alert_event(
        session,
        actor=principal,
        action="crisis_resources.update",
        resource_type="clinic_crisis_resources",
        resource_id=entry_id,
        clinic_id=clinic_id,
        at=now,
        purpose="operations",
    )
    return await effective_for(session, clinic_id, key)


async def delete_entry(
    session: AsyncSession,
    principal: Principal,
    clinic_id: uuid.UUID,
    locale: str,
    *,
    now: datetime,
    if_match: frozenset[str] | None = None,
) -> None:
    """Remove the clinic's entry: its patients with that locale see the next fallback.
    PreconditionFailed if ``if_match`` no longer names what a GET of the locale shows."""
    key = normalise_locale(locale)
    # Under the clinic's lock, as saves are: a save running beside the delete must not answer
    # 200 for an update that found no row.
    await lock_clinic(session, clinic_id)
    if if_match is not None:
        current = await effective_for(session, clinic_id, key)
        require_current(if_match, current, "the crisis resources of this locale")
    connection = await session.connection()
    entry_id = await connection.scalar(
        select(_c.id).where(_c.clinic_id == clinic_id, _c.locale == key)
    )
    if entry_id is None:
        raise NotFound("the clinic has no crisis resources for this locale")
    await connection.execute(delete(TABLE).where(_c.id == entry_id))
    await audit_alert_event(
        session,
        actor=principal,
        action="crisis_resources.delete",
        resource_type="clinic_crisis_resources",
        resource_id=entry_id,
        clinic_id=clinic_id,
        at=now,
        purpose="operations",
    )
