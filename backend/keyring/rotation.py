"""KEK rotation: re-wrap every data key under the active KEK, in batches, resumably, online.

Only the wrapped DEKs change (engineering-notes §D.7 "Rotation": O(owners), no field is
re-encrypted), so the service keeps running: each batch is one short transaction that locks only
the rows it re-wraps, and a data key is readable before, during and after, by any instance that
holds both KEKs (app instances using the key file reload it when they meet the new KEK id; with
``INTERLUDE_KEK`` give every instance the new key, first, before rotating). Progress lives in the
rows themselves (``kek_id``), so an interrupted run is resumed by running it again.

When no live data key names an old KEK any more, that KEK can be removed (``key_status`` says
which). Removing it also shreds, in every backup, the wrapped keys of owners erased before the
rotation (§D.6).

DEK rotation (``rotate-deks``) is not here: it re-encrypts rows, so it belongs with the domain
areas that own encrypted columns; see ``backend.keyring.service`` (``create_key``,
``destroy_version``) for the key-side steps it will use.
"""

from collections.abc import Callable
from typing import Final

import msgspec
from sqlalchemy import and_, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.crypto import KekProvider, rewrap_dek
from backend.keyring.service import DATA_KEYS

__all__ = ["DEFAULT_BATCH_SIZE", "KeyStatus", "RewrapProgress", "key_status", "rewrap_data_keys"]

DEFAULT_BATCH_SIZE: Final = 500
_c = DATA_KEYS.c


class KeyStatus(msgspec.Struct, frozen=True, kw_only=True):
    active_kek: str
    loaded_keks: list[str]
    live_keys_by_kek: dict[str, int]
    """Data keys that can still decrypt (active or retired), per KEK id that wraps them."""
    active: int
    retired: int
    destroyed: int

    @property
    def missing_keks(self) -> list[str]:
        """KEK ids that wrap live data keys but are not loaded: those keys cannot be unwrapped."""
        return sorted(set(self.live_keys_by_kek) - set(self.loaded_keks))

    @property
    def removable_keks(self) -> list[str]:
        """Loaded KEKs that wrap no live data key (never the active one)."""
        return sorted(
            kid
            for kid in self.loaded_keks
            if kid != self.active_kek and not self.live_keys_by_kek.get(kid)
        )

    @property
    def to_rewrap(self) -> int:
        return sum(n for kid, n in self.live_keys_by_kek.items() if kid != self.active_kek)


class RewrapProgress(msgspec.Struct, frozen=True, kw_only=True):
    rewrapped: int
    """Data keys re-wrapped by this run so far."""
    remaining: int
    """Live data keys still wrapped by another KEK."""


async def key_status(engine: AsyncEngine, kek: KekProvider) -> KeyStatus:
    state = case(
        (_c.destroyed_at.is_not(None), "destroyed"),
        (_c.retired_at.is_not(None), "retired"),
        else_="active",
    )
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(_c.kek_id, state.label("state"), func.count().label("n")).group_by(
                    _c.kek_id, state
                )
            )
        ).all()
    counts = {"active": 0, "retired": 0, "destroyed": 0}
    live: dict[str, int] = {}
    for row in rows:
        counts[str(row.state)] += int(row.n)
        if row.state != "destroyed":
            live[str(row.kek_id)] = live.get(str(row.kek_id), 0) + int(row.n)
    return KeyStatus(
        active_kek=kek.active_kid,
        loaded_keks=sorted(kek.kids()),
        live_keys_by_kek=live,
        active=counts["active"],
        retired=counts["retired"],
        destroyed=counts["destroyed"],
    )


async def rewrap_data_keys(
    engine: AsyncEngine,
    kek: KekProvider,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[RewrapProgress], None] | None = None,
) -> int:
    """Re-wrap every live data key that another KEK wraps under ``kek.active_kid``.

    Each batch commits on its own, then ``on_progress`` is called; stopping at any point loses
    nothing, and running again continues. Returns how many keys this run re-wrapped. A data key
    whose KEK is not loaded stops the run with ``UnknownKeyError`` naming that KEK.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    active = kek.active_kid
    pending = and_(_c.wrapped_dek.is_not(None), _c.kek_id != active)
    # Only rows still wrapped by the KEK we read: a concurrent shred or another rotation wins.
    store = (
        update(DATA_KEYS)
        .where(
            _c.owner_id == bindparam("b_owner"),
            _c.dek_version == bindparam("b_version"),
            _c.kek_id == bindparam("b_old_kek"),
            _c.wrapped_dek.is_not(None),
        )
        .values(kek_id=bindparam("b_new_kek"), wrapped_dek=bindparam("b_wrapped"))
    )
    rewrapped = 0
    while True:
        async with engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(_c.owner_id, _c.dek_version, _c.kek_id, _c.wrapped_dek)
                    .where(pending)
                    .order_by(_c.owner_id, _c.dek_version)
                    .limit(batch_size)
                    .with_for_update()
                )
            ).all()
            if not rows:
                return rewrapped
            parameters = []
            for row in rows:
                wrapped = rewrap_dek(
                    kek,
                    patient_id=str(row.owner_id),
                    dek_version=int(row.dek_version),
                    kek_id=str(row.kek_id),
                    wrapped_dek=bytes(row.wrapped_dek),
                )
                parameters.append(
                    {
                        "b_owner": row.owner_id,
                        "b_version": row.dek_version,
                        "b_old_kek": row.kek_id,
                        "b_new_kek": wrapped.kek_id,
                        "b_wrapped": wrapped.wrapped_dek,
                    }
                )
            await connection.execute(store, parameters)
            remaining = (
                await connection.execute(select(func.count()).select_from(DATA_KEYS).where(pending))
            ).scalar_one()
        rewrapped += len(rows)
        if on_progress is not None:
            on_progress(RewrapProgress(rewrapped=rewrapped, remaining=int(remaining)))
