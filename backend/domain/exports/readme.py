"""The bundle's README.md: what the files are, how they were de-identified, and how far the
k-anonymity gate had to generalise. Plain text for a statistician; no dates, no PHI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from backend.domain.exports.codebook import (
    InstrumentUsed,
    deidentification_summary,
    generalisation,
)
from backend.domain.exports.deid import DeidentificationProfile
from backend.domain.exports.fhir import EXTENSION_BASE
from backend.domain.exports.kanon import KAnonymityReport

_CLASSIFICATION = {
    "safe_harbor": "De-identified under the HIPAA Safe Harbor method (45 CFR 164.514(b)(2)).",
    "limited_data_set": (
        "LIMITED DATA SET: times are shifted by a secret per-patient offset, but shifted dates "
        "are still dates. Use only under a data use agreement (45 CFR 164.514(e))."
    ),
    "requires_review": (
        "CONTAINS FREE TEXT typed by patients, which may name people or places. Not de-identified "
        "until a person has reviewed every free-text value."
    ),
}


def _notices(profile: DeidentificationProfile) -> list[str]:
    """Every notice that applies: an export with free text and shifted dates is both a limited
    data set and in need of review, whatever its one-word classification says."""
    kinds = [profile.classification]
    if profile.date_shift and profile.classification != "limited_data_set":
        kinds.append("limited_data_set")
    return [line for kind in kinds for line in (_CLASSIFICATION[kind], "")]


def render_readme(
    *,
    name: str,
    profile: DeidentificationProfile,
    k_anonymity: KAnonymityReport,
    row_counts: Mapping[str, int],
    fhir_counts: Mapping[str, int],
    instruments: Sequence[InstrumentUsed],
    rules: Sequence[tuple[str, str]],
    software_version: str,
) -> str:
    summary = deidentification_summary(profile)
    lines = [
        f"# Research export: {name}",
        "",
        *_notices(profile),
        "## Files",
        "",
        "- `parquet/<table>.parquet`, `csv/<table>.csv`: the tables below (typed in Parquet).",
        "- `fhir/<ResourceType>.ndjson`: FHIR R4 Bulk Data, one resource per line (if requested).",
        "- `datapackage.json`: the codebook (Frictionless Data Package): every column, its type,",
        "  unit and allowed values; instrument, scorer and rule versions; this profile.",
        "- `MANIFEST.sha256`: checksums; verify with `sha256sum -c MANIFEST.sha256`.",
        "",
        "| table | rows |",
        "|---|---|",
        *(f"| {table} | {count} |" for table, count in row_counts.items()),
        *(f"| fhir/{kind} | {count} |" for kind, count in fhir_counts.items()),
        "",
        "## Time",
        "",
        *(
            (
                "Shifted dates: `shifted_start` and `shifted_time` are the real times moved by",
                "a secret offset per patient (the same for all of one patient's events).",
            )
            if profile.date_shift
            else ("There are no calendar dates.",)
        ),
        "Every event is placed relative to the patient's treatment:",
        "`course_index` (1 = first course), `session_index` k (the latest treatment session of",
        "the course at that time, 0 = before the first), `hours_since_session` (since session k),",
        "`hours_since_course_start` and `day_since_course_start` (0 = the first 24 hours).",
        "Session observations (blood pressure, CADSS-6, MOAA/S) and side effects the clinic",
        "recorded belong to the session they were recorded at: `session_index` is that session,",
        "and a reading taken before it began has negative `hours_since_session`. Units and ranges",
        "of these variables: `variables` in `datapackage.json`.",
        "Alerts add `hours_to_acknowledged` and `hours_to_resolved` (from the alert opening) and",
        "`hours_to_last_trigger`; their evidence and clinicians' notes are never exported.",
        *(
            (
                "`first_treatment_year` is empty: the real year would narrow each patient's",
                "shift (a shifted year can be read from the sessions' `shifted_start`).",
            )
            if profile.date_shift
            else ("Only `first_treatment_year` in `patients` is calendar information.",)
        ),
        "",
        "## Scores",
        "",
        "Each `total` row says whether the total is partial: `score_partial` (a scored item was",
        "left unanswered), `n_missing_items`, and `prorated` (missing items replaced by the mean",
        "of the answered ones). The clinical rules never treat a partial total as complete:",
        "exclude or weight such totals. A response too incomplete to score has an empty `value`.",
        "In FHIR, the total Observation carries the same as extensions",
        f"`{EXTENSION_BASE}:score-partial`, `:missing-items` and `:score-prorated`.",
        "",
        "## De-identification",
        "",
        f"- Study ids: {summary['study_ids']}.",
        f"- Ages: {summary['ages']}. Dates: {summary['dates']}. Free text: {summary['free_text']}.",
        f"- Removed: {', '.join(summary['removed'])}.",
        "",
        "## k-anonymity",
        "",
        f"- k required: {k_anonymity.k_required}; k achieved: {k_anonymity.k_achieved}.",
        f"- Quasi-identifiers: {', '.join(k_anonymity.quasi_identifiers)}.",
        *(f"- {qi}: {level}." for qi, level in generalisation(k_anonymity, profile).items()),
        f"- Patients considered: {k_anonymity.patients_considered}; left out to reach k: "
        f"{k_anonymity.patients_suppressed} (in {k_anonymity.classes_suppressed} classes).",
        "",
        "## Instruments and rules",
        "",
        *(
            f"- {i.instrument_id} {i.instrument_version} (scorer {i.scorer_version})"
            + (f": {i.title}" if i.title else "")
            + (f". {i.licence_notice}" if i.licence_notice else "")
            for i in instruments
        ),
        *(f"- rule {rule_id} version {version}" for rule_id, version in rules),
        "",
        f"Produced by Interlude {software_version}.",
        "",
    ]
    return "\n".join(lines)
