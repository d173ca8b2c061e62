import re
import string

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifications.base import Channel, Message, MessageData
from notifications.templates import TEMPLATES, Audience, MessageKind, template_for


def test_every_kind_has_a_template() -> None:
    assert set(TEMPLATES) == set(MessageKind)


@pytest.mark.parametrize("kind", list(MessageKind))
def test_templates_have_no_placeholders(kind: MessageKind) -> None:
    template = template_for(kind)
    for text in (template.title, template.body):
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
        assert fields == []
        assert "%" not in text
        assert "$" not in text


@pytest.mark.parametrize("kind", list(MessageKind))
def test_clinician_texts_point_to_the_dashboard_and_patient_texts_to_the_app(
    kind: MessageKind,
) -> None:
    template = template_for(kind)
    text = f"{template.title} {template.body}"
    if template.audience is Audience.CLINICIAN:
        assert "dashboard" in text
    else:
        assert "Interlude" in text


def test_the_check_in_and_alert_wording_is_the_agreed_one() -> None:
    assert template_for(MessageKind.CHECK_IN_DUE).title == "You have a new check-in"
    assert template_for(MessageKind.ALERT).title == "New alert for a patient in your clinic"


def test_a_message_has_no_field_for_free_text() -> None:
    # Title and body are derived from the kind; the only other strings are identifiers.
    message_fields = {f.name for f in msgspec.structs.fields(Message)}
    assert {"title", "body", "text", "note"}.isdisjoint(message_fields)
    data_fields = {f.name for f in msgspec.structs.fields(MessageData)}
    assert all(name.endswith("_id") for name in data_fields)


def test_free_text_cannot_be_decoded_into_a_message() -> None:
    raw = {
        "id": "m1",
        "idempotency_key": "k1",
        "channel": "sms",
        "recipient": "+15550100",
        "kind": "alert",
        "title": "Jane scored 27",
    }
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, Message)


_identifier = re.compile(r"[A-Za-z0-9_\-:.]{1,128}")


@given(st.text(max_size=200))
def test_data_accepts_identifiers_and_refuses_everything_else(value: str) -> None:
    if _identifier.fullmatch(value):
        assert MessageData(check_in_id=value).as_strings() == {"check_in_id": value}
    else:
        with pytest.raises(ValueError, match="identifier"):
            MessageData(check_in_id=value)


def test_sentences_and_addresses_are_not_identifiers() -> None:
    for value in ("Jane Doe", "jane@example.org", "PHQ-9 total 21!", ""):
        with pytest.raises(ValueError, match="identifier"):
            MessageData(alert_id=value)


def test_the_repr_of_a_message_withholds_the_recipient() -> None:
    message = Message(
        id="m1",
        idempotency_key="k1",
        channel=Channel.EMAIL,
        recipient="jane@example.org",
        kind=MessageKind.ALERT,
    )
    assert "jane" not in repr(message)
    assert "jane" not in str(message)


@pytest.mark.parametrize("ttl", [-1, 28 * 24 * 3600 + 1])
def test_ttl_is_bounded(ttl: int) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        Message(
            id="m1",
            idempotency_key="k1",
            channel=Channel.SMS,
            recipient="+15550100",
            kind=MessageKind.CHECK_IN_DUE,
            ttl_seconds=ttl,
        )


def test_messages_round_trip_through_the_outbox_encoding() -> None:
    message = Message(
        id="m1",
        idempotency_key="k1",
        channel=Channel.FCM,
        recipient="device-token",
        kind=MessageKind.CHECK_IN_REMINDER,
        data=MessageData(check_in_id="c1"),
    )
    assert msgspec.json.decode(msgspec.json.encode(message), type=Message) == message


def test_default_collapse_key_names_the_kind_and_the_subject() -> None:
    message = Message(
        id="m1",
        idempotency_key="k1",
        channel=Channel.APNS,
        recipient="t",
        kind=MessageKind.CHECK_IN_DUE,
        data=MessageData(check_in_id="c1"),
    )
    assert message.effective_collapse_key == "check_in_due:c1"
    assert message.payload_fields() == {
        "message_id": "m1",
        "kind": "check_in_due",
        "check_in_id": "c1",
    }
