"""When each fallback step is due and what to do now (pure: data in, a decision out).

Steps are data (`timings.json`): minutes after the first push. A short window compresses them
proportionally so the last step still comes ``finish_before_close`` before the window closes (or
half-way through what is left, for windows shorter than that margin). A step whose channel the
patient cannot use is skipped (no SMS without the opt-in); without push at all, the SMS becomes
the first contact and is due at once. After downtime, only the latest overdue step is taken
(a re-sent push and a text in the same minute help nobody).
"""

from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

import msgspec

TIMINGS_FILE: Final = Path(__file__).with_name("timings.json")


class Action(StrEnum):
    RESEND_PUSH = "resend_push"
    SMS = "sms"
    STAFF_TASK = "staff_task"


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    action: Action
    after_minutes: Annotated[float, msgspec.Meta(gt=0, le=7 * 24 * 60)]


class FallbackTimings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    steps: tuple[Step, ...]
    finish_before_close_minutes: Annotated[float, msgspec.Meta(ge=0, le=24 * 60)] = 30

    def __post_init__(self) -> None:
        delays = [s.after_minutes for s in self.steps]
        if not delays or delays != sorted(set(delays)):
            raise ValueError("fallback steps need strictly increasing after_minutes")


def load_timings(path: Path = TIMINGS_FILE) -> FallbackTimings:
    return msgspec.json.decode(path.read_bytes(), type=FallbackTimings)


DEFAULT_TIMINGS: Final = load_timings()


def step_times(
    first_sent: datetime, closes_at: datetime, timings: FallbackTimings = DEFAULT_TIMINGS
) -> list[datetime]:
    """When each step is due: increasing, and before ``closes_at`` whenever first_sent is."""
    offsets = [timedelta(minutes=s.after_minutes) for s in timings.steps]
    # At least a minute: a step at the very instant the window closes would find it closed.
    margin = max(timedelta(minutes=timings.finish_before_close_minutes), timedelta(minutes=1))
    deadline = closes_at - margin
    if deadline <= first_sent:
        deadline = first_sent + (closes_at - first_sent) / 2
    room = deadline - first_sent
    scale = min(1.0, room / offsets[-1]) if room > timedelta(0) else 0.0
    return [first_sent + offset * scale for offset in offsets]


class Reach(msgspec.Struct, frozen=True, kw_only=True):
    """What the patient can be reached by now."""

    push: bool
    sms: bool


def usable(action: Action, reach: Reach) -> bool:
    if action is Action.RESEND_PUSH:
        return reach.push
    if action is Action.SMS:
        return reach.sms
    return True


class Finish(msgspec.Struct, frozen=True, tag=True):
    status: str  # confirmed | closed | finished
    outcome: str


class Wait(msgspec.Struct, frozen=True, tag=True):
    step: int  # steps before this one are done or skipped
    until: datetime


class Act(msgspec.Struct, frozen=True, tag=True):
    step: int
    action: Action
    next_at: datetime | None  # None: this was the last step


Decision = Finish | Wait | Act
OPEN_CHECK_IN: Final = frozenset({"pending", "claimed", "sent"})
MONITORING_STOPPED: Final = "monitoring_stopped"
"""The outcome of a watch closed because the patient's monitoring stopped (withdrawn, erased)."""


def decide(
    *,
    steps_done: int,
    first_sent: datetime,
    closes_at: datetime,
    now: datetime,
    check_in_status: str | None,
    confirmed: bool,
    reach: Reach,
    monitoring_stopped: bool = False,
    timings: FallbackTimings = DEFAULT_TIMINGS,
) -> Decision:
    """The watch's next move. ``monitoring_stopped``: the check-in's patient withdrew their
    monitoring consent or was erased; nothing more may reach them, or ask staff to reach them,
    whatever else holds (a withdrawal racing a pass, an erasure)."""
    if monitoring_stopped:
        return Finish(status="closed", outcome=MONITORING_STOPPED)
    if confirmed:
        return Finish(status="confirmed", outcome="receipt")
    if check_in_status not in OPEN_CHECK_IN:
        return Finish(status="closed", outcome=check_in_status or "check_in_gone")
    if now >= closes_at:
        return Finish(status="closed", outcome="window_closed")
    times = step_times(first_sent, closes_at, timings)
    if not reach.push:
        # No push reached the patient at all: the text is the first contact, not a fallback.
        times = [
            first_sent if s.action is Action.SMS else t
            for s, t in zip(timings.steps, times, strict=True)
        ]
    candidates = [
        i for i in range(steps_done, len(timings.steps)) if usable(timings.steps[i].action, reach)
    ]
    if not candidates:
        return Finish(status="finished", outcome="no_step_left")
    due = [i for i in candidates if times[i] <= now]
    if not due:
        return Wait(step=candidates[0], until=times[candidates[0]])
    step = due[-1]
    later = [times[i] for i in candidates if i > step]
    return Act(step=step, action=timings.steps[step].action, next_at=later[0] if later else None)
