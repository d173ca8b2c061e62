"""The crisis screen a submission's response carries (clinical-spec §5.3 rule 2), with the
clinic's content for the patient's locale.

Whether it shows, and how urgent it is, comes from the same function the alert rule uses
(`alerts.rules.suicidality.suicidality_signal`: suicide items, a C-SSRS "yes", free text matched
by the clinic's keyword list), so the patient sees the crisis screen exactly when clinicians get a
suicidality alert. The clinic's settings are read only when they matter: the keyword list when
the submission has free text, the crisis content when the screen shows.
"""

import uuid
from datetime import datetime
from functools import cache
from typing import Final

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.alerts.candidate import SEVERITY_RANK
from backend.domain.alerts.clinic_settings import parameters_for_clinic
from backend.domain.alerts.parameters import (
    AlertParameters,
    SuicidalityParameters,
    load_parameters,
)
from backend.domain.alerts.rules.suicidality import suicidality_signal
from backend.domain.alerts.timeline import scored_response
from backend.domain.safety.crisis import CrisisScreen, Urgency
from backend.domain.safety.resources import crisis_content
from questionnaires.answers import Answer
from questionnaires.registry import catalogue
from questionnaires.scoring import Score

_SUBMISSION: Final = "submission"


@cache
def _default_suicidality() -> SuicidalityParameters:
    return load_parameters().suicidality


def _urgency(severity: str) -> Urgency:
    rank = SEVERITY_RANK[severity]  # type: ignore[index]
    if rank >= SEVERITY_RANK["emergency"]:
        return "emergency"
    return "urgent" if rank >= SEVERITY_RANK["urgent"] else "priority"


async def crisis_screen_for_submission(
    session: AsyncSession,
    *,
    clinic_id: uuid.UUID,
    locale: str | None,
    clinic_contact: str | None,
    score: Score,
    answers: tuple[Answer, ...],
    now: datetime,
    parameters: AlertParameters | None = None,
) -> CrisisScreen | None:
    """The screen to show first for this submission, or None when it carries no §5.3 trigger."""
    instrument = catalogue().get(score.instrument_id, score.instrument_version)
    view = scored_response(
        score,
        instrument,
        response_id=_SUBMISSION,
        authored=now,
        answers={answer.link_id: answer.value for answer in answers},
    )
    if not view.free_text:
        suicidality = _default_suicidality()
    elif parameters is not None:  # the caller read them in this transaction
        suicidality = parameters.suicidality
    else:
        suicidality = (await parameters_for_clinic(session, clinic_id)).suicidality
    signal = suicidality_signal(view, suicidality)
    if signal is None or not signal.crisis_screen:
        return None  # no trigger, or a "task only" answer (MADRS-S item 9 of 2-3)
    content = await crisis_content(await session.connection(), clinic_id, locale)
    return CrisisScreen(
        urgency=_urgency(signal.severity),
        headline=content.headline,
        resources=content.resources,
        clinic_contact=content.clinic_contact or clinic_contact,
        resources_version=content.version,
    )
