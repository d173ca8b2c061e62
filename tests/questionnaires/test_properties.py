"""Properties over every shipped instrument, with random answers (hypothesis)."""

from hypothesis import given
from hypothesis import strategies as st

from questionnaires.answers import Answer, AnswerValue, Submission
from questionnaires.errors import AnswerValidationError
from questionnaires.model import Instrument, Item, SumScoring
from questionnaires.registry import list_instruments
from questionnaires.scoring import score, severity_band

INSTRUMENTS = list_instruments()
SCORED = [i for i in INSTRUMENTS if i.total_min is not None]


def value_for(item: Item) -> st.SearchStrategy[AnswerValue]:
    if item.type == "choice":
        return st.sampled_from([option.value for option in item.options])
    if item.type == "boolean":
        return st.booleans()
    assert item.min_value is not None
    assert item.max_value is not None
    return st.integers(int(item.min_value), int(item.max_value))


@st.composite
def answered(draw: st.DrawFn, instrument: Instrument) -> Submission:
    """Random valid values, each scored item possibly skipped (non-scored ones always answered)."""
    scored = set()
    if isinstance(instrument.scoring, SumScoring):
        scored = set(instrument.scoring.items)
    elif instrument.total_min is not None:
        scored = {link for domain in instrument.scoring.domains for link in domain.items}  # type: ignore[union-attr]
    answers = []
    for item in instrument.items:
        skippable = item.link_id in scored and not item.required
        if item.enable_when or (skippable and draw(st.booleans())):
            continue
        answers.append(Answer(link_id=item.link_id, value=draw(value_for(item))))
    return Submission(
        instrument_id=instrument.id, instrument_version=instrument.version, answers=tuple(answers)
    )


@st.composite
def scored_submission(draw: st.DrawFn) -> tuple[Instrument, Submission]:
    instrument = draw(st.sampled_from(SCORED))
    return instrument, draw(answered(instrument))


@given(scored_submission())
def test_totals_stay_in_range_and_always_have_a_band(case: tuple[Instrument, Submission]) -> None:
    instrument, submission = case
    result = score(instrument, submission)
    if result.total is not None:
        assert instrument.total_min is not None
        assert instrument.total_max is not None
        assert instrument.total_min <= result.total <= instrument.total_max
        assert (result.band is not None) == bool(instrument.bands)
    else:
        assert result.band is None
        assert result.missing_items


@given(scored_submission())
def test_proration_never_applies_when_a_suicide_item_is_missing(
    case: tuple[Instrument, Submission],
) -> None:
    instrument, submission = case
    result = score(instrument, submission)
    suicide_items = {s.link_id for s in instrument.safety_items if s.concern == "suicidality"}
    if suicide_items & set(result.missing_items):
        assert result.total is None
        assert not result.prorated
        assert suicide_items & set(result.unanswered_safety_items)


def test_every_instrument_with_a_suicide_item_refuses_to_prorate_it() -> None:
    for instrument in SCORED:
        suicide = {s.link_id for s in instrument.safety_items if s.concern == "suicidality"}
        if isinstance(instrument.scoring, SumScoring) and instrument.scoring.proration.max_missing:
            assert suicide <= set(instrument.scoring.proration.never_prorate)


def test_bands_partition_the_score_range() -> None:
    for instrument in SCORED:
        assert instrument.total_min is not None
        assert instrument.total_max is not None
        if not instrument.bands:
            continue
        for total in range(instrument.total_min - 1, instrument.total_max + 2):
            matching = [b for b in instrument.bands if b.min <= total <= b.max]
            inside = instrument.total_min <= total <= instrument.total_max
            assert len(matching) == (1 if inside else 0), (instrument.id, total)
            assert (severity_band(instrument, total) is not None) == inside


BOUNDED = [
    (instrument, item)
    for instrument in INSTRUMENTS
    for item in instrument.items
    if item.type in ("choice", "integer")
]


@st.composite
def out_of_range(draw: st.DrawFn) -> tuple[Instrument, Item, int]:
    instrument, item = draw(st.sampled_from(BOUNDED))
    if item.type == "choice":
        allowed = {o.value for o in item.options}
        value = draw(st.integers().filter(lambda v: v not in allowed))
    else:
        assert item.min_value is not None
        assert item.max_value is not None
        value = draw(
            st.one_of(
                st.integers(max_value=int(item.min_value) - 1),
                st.integers(min_value=int(item.max_value) + 1),
            )
        )
    return instrument, item, value


@given(out_of_range())
def test_validation_rejects_every_out_of_range_value(case: tuple[Instrument, Item, int]) -> None:
    instrument, item, value = case
    submission = Submission(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        answers=(Answer(link_id=item.link_id, value=value),),
    )
    try:
        score(instrument, submission)
    except AnswerValidationError as error:
        codes = {(p.link_id, p.code) for p in error.problems}
        assert (item.link_id, "not_an_option") in codes or (item.link_id, "out_of_range") in codes
    else:
        raise AssertionError("an out-of-range value was accepted")
