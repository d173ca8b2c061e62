"""Merging the check-ins of sessions close together: no instrument asked twice for overlapping
windows ("no two PHQ-9s due the same afternoon", issue 6).

The rule, applied to a patient's not-yet-sent check-ins (`candidates`) in a fixed order
(nominal due time, then key), so the result does not depend on the order they are given in:
1. An instrument already issued (claimed, sent or answered) by a check-in whose window overlaps
   the candidate's is not asked again. A candidate left with nothing to ask is merged into that
   issued check-in.
2. A candidate that shares an instrument with an earlier, overlapping check-in joins it: the
   joined check-in asks the union of instruments within the intersection of the windows, due at
   the earliest nominal due time inside that intersection (moved out of quiet hours again), at
   the higher priority. Instruments that another overlapping check-in already asks are dropped
   from the candidate rather than asked twice.
3. Otherwise the candidate stays a check-in of its own.

Each joined check-in's window lies inside every member's window, so every instrument is still
asked inside the window its protocol set. Issued check-ins are never changed: they are read,
not returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from backend.domain.check_ins.plans import (
    ISSUED,
    CheckInPlan,
    ExistingCheckIn,
    PatientSchedulingContext,
    merged,
    settle,
)
from backend.domain.check_ins.protocols import PRIORITY_RANK


class _Group(msgspec.Struct, kw_only=True):
    """Check-ins being joined; the first member is the one that is sent."""

    members: list[CheckInPlan]
    instruments: list[str]
    opens_at: datetime
    closes_at: datetime

    def overlaps(self, opens_at: datetime, closes_at: datetime) -> bool:
        return _overlaps(self.opens_at, self.closes_at, opens_at, closes_at)


def merge_check_ins(
    candidates: Iterable[CheckInPlan],
    issued: Iterable[ExistingCheckIn],
    patient: PatientSchedulingContext,
) -> list[CheckInPlan]:
    """Every candidate, settled or merged, ordered by (nominal due time, key).

    Candidates are read for what their protocol asked (`planned_*`); their outcome fields are
    recomputed. `issued` may hold any existing check-ins: only claimed, sent and answered count.
    """
    covering = sorted((e.plan for e in issued if e.status in ISSUED), key=lambda p: p.key)
    ordered = sorted(candidates, key=lambda p: (p.nominal_due_at, p.key))
    groups: list[_Group] = []
    results: dict[str, CheckInPlan] = {}
    for plan in ordered:
        opens, closes = plan.planned_opens_at, plan.planned_closes_at
        issued_here = [c for c in covering if _overlaps(c.opens_at, c.closes_at, opens, closes)]
        remaining = [
            i for i in plan.planned_instruments if not any(i in c.instruments for c in issued_here)
        ]
        if not remaining:
            into = next(
                c.key for c in issued_here if set(c.instruments) & set(plan.planned_instruments)
            )
            results[plan.key] = merged(plan, into, patient)
            continue
        nearby = [g for g in groups if g.overlaps(opens, closes)]
        host = next((g for g in nearby if set(g.instruments) & set(remaining)), None)
        asked_nearby = {i for g in nearby for i in g.instruments}
        if host is None:
            groups.append(
                _Group(members=[plan], instruments=remaining, opens_at=opens, closes_at=closes)
            )
            continue
        host.members.append(plan)
        host.instruments.extend(i for i in remaining if i not in asked_nearby)
        host.opens_at, host.closes_at = max(host.opens_at, opens), min(host.closes_at, closes)
    for group in groups:
        results.update((p.key, p) for p in _settled_group(group, patient))
    return [results[p.key] for p in ordered]


def _settled_group(group: _Group, patient: PatientSchedulingContext) -> list[CheckInPlan]:
    head, *others = group.members
    earliest = min(p.nominal_due_at for p in group.members)
    priority = max((p.planned_priority for p in group.members), key=PRIORITY_RANK.__getitem__)
    sent = settle(
        head,
        instruments=tuple(group.instruments),
        opens_at=group.opens_at,
        closes_at=group.closes_at,
        nominal=max(earliest, group.opens_at),
        patient=patient,
        priority=priority,
        absorbed=tuple(p.key for p in others),
    )
    return [sent, *(merged(p, head.key, patient) for p in others)]


def _overlaps(a_opens: datetime, a_closes: datetime, b_opens: datetime, b_closes: datetime) -> bool:
    return a_opens < b_closes and b_opens < a_closes
