"""The only texts a notification can carry: fixed, PHI-free sentences chosen by message kind.

A push banner, an SMS or an email subject is shown on a lock screen or read by whoever holds the
phone, and travels through Apple, Google, carriers and mail relays. So no text here has a
placeholder: a message cannot carry a name, an answer, a score or free text, only the kind of
thing that happened; the app or the dashboard shows the rest after the user signs in.
"""

from enum import StrEnum
from typing import Final

import msgspec


class Audience(StrEnum):
    """Who reads the text; decides the wording, never the content."""

    PATIENT = "patient"
    CLINICIAN = "clinician"


class MessageKind(StrEnum):
    """What happened, in the clinic's words."""

    CHECK_IN_DUE = "check_in_due"
    CHECK_IN_REMINDER = "check_in_reminder"
    ALERT = "alert"
    ALERT_ESCALATION = "alert_escalation"
    # Channel fallback ends with a person: a task for staff when a patient could not be reached.
    PATIENT_UNREACHED = "patient_unreached"


class Template(msgspec.Struct, frozen=True):
    audience: Audience
    title: str
    body: str


TEMPLATES: Final[dict[MessageKind, Template]] = {
    MessageKind.CHECK_IN_DUE: Template(
        Audience.PATIENT,
        title="You have a new check-in",
        body="Open Interlude to answer a few short questions.",
    ),
    MessageKind.CHECK_IN_REMINDER: Template(
        Audience.PATIENT,
        title="Your check-in is waiting",
        body="Open Interlude when you have a moment.",
    ),
    MessageKind.ALERT: Template(
        Audience.CLINICIAN,
        title="New alert for a patient in your clinic",
        body="Open the dashboard to review it.",
    ),
    MessageKind.ALERT_ESCALATION: Template(
        Audience.CLINICIAN,
        title="An alert in your clinic is still unacknowledged",
        body="Open the dashboard to review it.",
    ),
    MessageKind.PATIENT_UNREACHED: Template(
        Audience.CLINICIAN,
        title="A patient in your clinic could not be reached for a check-in",
        body="Open the dashboard to follow up.",
    ),
}


def template_for(kind: MessageKind) -> Template:
    return TEMPLATES[kind]
