"""The k-anonymity gate: every combination of quasi-identifiers in an export is shared by at
least k patients, or the patients in it are left out, or the export is refused.

Quasi-identifiers (engineering-notes §E.4): age band, sex, region, treatment modality, number of
courses and of sessions, calendar year of the first treatment, and rare flags (alert kinds such as
B12-deficiency neurology, quasi-identifying in small cohorts). Every column of the patients table
but the study id is one: a column left out of the class key could split a class the gate counted.
k defaults to 5.

What can be generalised and what cannot: age, region and year appear only in the patients table,
so they can be coarsened. Modality, the numbers of courses and sessions and the rare flags can be
recounted from the sessions and alerts tables, so coarsening them in the patients table would hide
nothing; they stay exact, and classes that remain too small are suppressed (their patients are
left out of every table). The gate walks a ladder of generalisations, finest first, and takes the
first step at which suppression stays within the policy's limit; if none does, it refuses.

Pure functions; the only state is what the caller passes in.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import ClassVar, Literal

import msgspec

from backend.lib.errors import DomainError

RegionLevel = Literal["zip3", "state", "none"]

QUASI_IDENTIFIERS: tuple[str, ...] = (
    "age_band",
    "sex",
    "region",
    "modality",
    "n_courses",
    "n_sessions",
    "first_treatment_year",
    "rare_flags",
)
"""The QI columns of the patients table, in the order of a class key."""

SUPPRESSED = "*"
"""The value of a generalised-away quasi-identifier (the convention of ARX and sdcMicro)."""

SAFE_HARBOR_TOP_AGE = 90
"""Ages over 89 are one group, "90+" (45 CFR 164.514(b)(2)(i)(C))."""


class QuasiIdentifiers(msgspec.Struct, frozen=True, kw_only=True):
    """One patient's quasi-identifiers at their finest, Safe-Harbor-compliant level. Internal:
    the exact age never leaves the service, only its band."""

    age: int | None
    sex: str
    zip3: str | None
    state: str | None
    modality: str
    n_courses: int
    n_sessions: int
    first_treatment_year: int | None
    rare_flags: tuple[str, ...]


class Generalisation(msgspec.Struct, frozen=True, kw_only=True):
    """One rung of the ladder: how coarsely each generalisable quasi-identifier is exported."""

    age_band_years: int | None
    """Width of the age bands; None drops age altogether."""
    region: RegionLevel
    keep_year: bool

    def describe(self) -> dict[str, str]:
        return {
            "age_band": "suppressed"
            if self.age_band_years is None
            else f"{self.age_band_years}-year bands, 90+ grouped",
            "region": {"zip3": "3-digit ZIP", "state": "state", "none": "suppressed"}[self.region],
            "first_treatment_year": "year" if self.keep_year else "suppressed",
        }


DEFAULT_LADDER: tuple[Generalisation, ...] = (
    Generalisation(age_band_years=5, region="zip3", keep_year=True),
    Generalisation(age_band_years=10, region="zip3", keep_year=True),
    Generalisation(age_band_years=10, region="state", keep_year=True),
    Generalisation(age_band_years=20, region="state", keep_year=True),
    Generalisation(age_band_years=20, region="state", keep_year=False),
    Generalisation(age_band_years=20, region="none", keep_year=False),
    Generalisation(age_band_years=None, region="none", keep_year=False),
)


class KAnonymityPolicy(msgspec.Struct, frozen=True, kw_only=True):
    k: int = 5
    max_suppressed_fraction: float = 0.1
    """At most this share of the cohort may be left out to reach k; beyond it the gate
    generalises further, and at the end of the ladder it refuses."""
    generalise: bool = True
    """False: a study that wants the finest level or nothing (suppression still applies)."""
    ladder: tuple[Generalisation, ...] = DEFAULT_LADDER

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if not 0 <= self.max_suppressed_fraction <= 1:
            raise ValueError("max_suppressed_fraction must be between 0 and 1")
        if not self.ladder:
            raise ValueError("the generalisation ladder needs at least one step")


class KAnonymityReport(msgspec.Struct, frozen=True, kw_only=True):
    """What the manifest and codebook say about the gate."""

    k_required: int
    k_achieved: int
    quasi_identifiers: tuple[str, ...]
    generalisation_step: int
    generalisation: dict[str, str]
    patients_considered: int
    patients_suppressed: int
    classes: int
    classes_suppressed: int


class KAnonymityDecision(msgspec.Struct, frozen=True, kw_only=True):
    generalisation: Generalisation
    suppressed: frozenset[uuid.UUID]
    """Internal ids of patients left out of every table. Never written anywhere."""
    cleared: Mapping[uuid.UUID, tuple[str, ...]]
    """The class key each exported patient was cleared with, so that the second pass can tell
    when a patient's data changed after the gate ran (`deid.CohortChanged`)."""
    report: KAnonymityReport


class ExportRefused(DomainError):
    """The export cannot meet its k-anonymity policy. The reason names counts, never people."""

    status_code: ClassVar[int] = 422
    problem_type: ClassVar[str] = "export-refused"
    title: ClassVar[str] = "The export would identify patients"


def age_band(age: int | None, width: int | None) -> str:
    """ "35-39" for width 5; "90+" for any age over 89; "unknown" without a birth date."""
    if width is None:
        return SUPPRESSED
    if age is None:
        return "unknown"
    if age >= SAFE_HARBOR_TOP_AGE:
        return f"{SAFE_HARBOR_TOP_AGE}+"
    low = age // width * width
    high = min(low + width - 1, SAFE_HARBOR_TOP_AGE - 1)
    return f"{low}-{high}"


def region(qi: QuasiIdentifiers, level: RegionLevel) -> str:
    if level == "none":
        return SUPPRESSED
    value = qi.zip3 if level == "zip3" else qi.state
    return value if value is not None else "unknown"


def class_key(qi: QuasiIdentifiers, step: Generalisation) -> tuple[str, ...]:
    """The patient's QI values as exported at this step, in `QUASI_IDENTIFIERS` order."""
    year = qi.first_treatment_year
    return (
        age_band(qi.age, step.age_band_years),
        qi.sex,
        region(qi, step.region),
        qi.modality,
        str(qi.n_courses),
        str(qi.n_sessions),
        SUPPRESSED if not step.keep_year else ("unknown" if year is None else str(year)),
        ",".join(qi.rare_flags),
    )


def k_anonymity_gate(
    cohort: Mapping[uuid.UUID, QuasiIdentifiers], policy: KAnonymityPolicy
) -> KAnonymityDecision:
    """Choose the finest generalisation at which every class has at least k patients after
    suppressing at most `max_suppressed_fraction` of the cohort; raise `ExportRefused` if none.
    """
    total = len(cohort)
    if total < policy.k:
        raise ExportRefused(
            f"the cohort has {total} consenting patients, fewer than k = {policy.k}"
        )
    budget = math.floor(policy.max_suppressed_fraction * total)
    steps = policy.ladder if policy.generalise else policy.ladder[:1]
    fewest_left_out = total
    for index, step in enumerate(steps):
        keys = {patient_id: class_key(qi, step) for patient_id, qi in cohort.items()}
        sizes = Counter(keys.values())
        small = {key for key, size in sizes.items() if size < policy.k}
        suppressed = frozenset(pid for pid, key in keys.items() if key in small)
        fewest_left_out = min(fewest_left_out, len(suppressed))
        if len(suppressed) > budget or len(suppressed) == total:
            continue
        return KAnonymityDecision(
            generalisation=step,
            suppressed=suppressed,
            cleared={pid: key for pid, key in keys.items() if pid not in suppressed},
            report=KAnonymityReport(
                k_required=policy.k,
                k_achieved=min(size for key, size in sizes.items() if key not in small),
                quasi_identifiers=QUASI_IDENTIFIERS,
                generalisation_step=index,
                generalisation=step.describe(),
                patients_considered=total,
                patients_suppressed=len(suppressed),
                classes=len(sizes) - len(small),
                classes_suppressed=len(small),
            ),
        )
    raise ExportRefused(
        f"k = {policy.k} is not reachable: after {len(steps)} generalisation step(s) at least "
        f"{fewest_left_out} of {total} patients would have to be left out, more than the "
        f"allowed {budget}"
    )
