"""The k-anonymity gate: generalise step by step, suppress within budget, or refuse."""

from __future__ import annotations

import math
import uuid
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.domain.exports.kanon import (
    DEFAULT_LADDER,
    ExportRefused,
    KAnonymityPolicy,
    QuasiIdentifiers,
    class_key,
    k_anonymity_gate,
)


def qi(
    age: int | None = 44,
    sex: str = "female",
    zip3: str | None = "021",
    state: str | None = "US-MA",
    modality: str = "ketamine_iv",
    n_courses: int = 1,
    n_sessions: int = 4,
    year: int | None = 2025,
    flags: tuple[str, ...] = (),
) -> QuasiIdentifiers:
    return QuasiIdentifiers(
        age=age,
        sex=sex,
        zip3=zip3,
        state=state,
        modality=modality,
        n_courses=n_courses,
        n_sessions=n_sessions,
        first_treatment_year=year,
        rare_flags=flags,
    )


def cohort(*members: QuasiIdentifiers) -> dict[uuid.UUID, QuasiIdentifiers]:
    return {uuid.uuid4(): m for m in members}


def test_a_cohort_smaller_than_k_is_refused_with_counts_only() -> None:
    with pytest.raises(ExportRefused, match=r"4 consenting patients, fewer than k = 5") as caught:
        k_anonymity_gate(cohort(*[qi()] * 4), KAnonymityPolicy())
    assert caught.value.status_code == 422


def test_the_finest_level_is_kept_when_it_already_reaches_k() -> None:
    decision = k_anonymity_gate(cohort(*[qi(age=41)] * 5, *[qi(age=47)] * 5), KAnonymityPolicy())
    assert decision.report.generalisation_step == 0
    assert decision.report.k_achieved == 5
    assert decision.report.classes == 2
    assert decision.suppressed == frozenset()
    assert decision.report.generalisation["age_band"] == "5-year bands, 90+ grouped"


def test_age_bands_are_widened_before_patients_are_left_out() -> None:
    members = cohort(*[qi(age=41)] * 3, *[qi(age=47)] * 3)
    decision = k_anonymity_gate(members, KAnonymityPolicy())
    assert decision.report.generalisation_step == 1
    assert decision.report.k_achieved == 6
    assert set(decision.cleared.values()) == {class_key(qi(age=41), DEFAULT_LADDER[1])}


def test_region_is_coarsened_to_state_when_zip_areas_are_small() -> None:
    members = cohort(*[qi(zip3=z) for z in ("021", "022", "023", "024", "025")] * 2)
    decision = k_anonymity_gate(members, KAnonymityPolicy())
    assert decision.report.generalisation["region"] == "state"


def test_a_rare_flag_is_suppressed_not_generalised() -> None:
    lonely = qi(flags=("N2O_NEURO_SYMPTOMS",))
    members = cohort(*[qi()] * 10, lonely)
    decision = k_anonymity_gate(members, KAnonymityPolicy())
    assert decision.report.generalisation_step == 0
    assert decision.report.patients_suppressed == 1
    assert [pid for pid, m in members.items() if m is lonely] == list(decision.suppressed)


def test_refuses_when_suppression_would_exceed_the_budget() -> None:
    members = cohort(*[qi()] * 6, *[qi(modality="n2o")] * 4)
    with pytest.raises(ExportRefused, match=r"at least 4 of 10 patients .* allowed 1"):
        k_anonymity_gate(members, KAnonymityPolicy())
    relaxed = k_anonymity_gate(members, KAnonymityPolicy(max_suppressed_fraction=0.5))
    assert relaxed.report.patients_suppressed == 4


def test_a_study_that_forbids_generalising_is_refused_where_widening_would_help() -> None:
    members = cohort(*[qi(age=41)] * 3, *[qi(age=47)] * 3)
    with pytest.raises(ExportRefused, match="after 1 generalisation step"):
        k_anonymity_gate(members, KAnonymityPolicy(generalise=False))


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="k must be"):
        KAnonymityPolicy(k=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        KAnonymityPolicy(max_suppressed_fraction=1.5)
    with pytest.raises(ValueError, match="at least one step"):
        KAnonymityPolicy(ladder=())


quasi_identifier = st.builds(
    qi,
    age=st.one_of(st.none(), st.integers(min_value=18, max_value=105)),
    sex=st.sampled_from(["female", "male", "other"]),
    zip3=st.sampled_from(["021", "022", "000", None]),
    state=st.sampled_from(["US-MA", "US-NH", None]),
    modality=st.sampled_from(["n2o", "ketamine_iv", "esketamine_in"]),
    n_sessions=st.integers(min_value=1, max_value=3),
    year=st.sampled_from([2024, 2025, None]),
    flags=st.sampled_from([(), ("N2O_NEURO_SYMPTOMS",)]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(quasi_identifier, min_size=0, max_size=80),
    st.integers(min_value=1, max_value=8),
    st.sampled_from([0.0, 0.05, 0.2, 1.0]),
    st.booleans(),
)
def test_after_the_gate_every_class_has_k_patients_or_is_suppressed(
    members: list[QuasiIdentifiers], k: int, fraction: float, generalise: bool
) -> None:
    population = cohort(*members)
    policy = KAnonymityPolicy(k=k, max_suppressed_fraction=fraction, generalise=generalise)
    try:
        decision = k_anonymity_gate(population, policy)
    except ExportRefused:
        return
    step = decision.generalisation
    assert set(decision.cleared) | decision.suppressed == set(population)
    assert not set(decision.cleared) & decision.suppressed
    assert len(decision.suppressed) <= math.floor(fraction * len(population))
    sizes = Counter(class_key(population[pid], step) for pid in decision.cleared)
    assert sizes
    assert min(sizes.values()) >= k
    assert decision.report.k_achieved == min(sizes.values())
    assert decision.report.patients_suppressed == len(decision.suppressed)
    for pid, key in decision.cleared.items():
        assert key == class_key(population[pid], step)
        age = population[pid].age
        if age is not None and age >= 90 and step.age_band_years is not None:
            assert key[0] == "90+"
