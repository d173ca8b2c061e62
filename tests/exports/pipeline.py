"""The export as the backend will run it: gate pass, de-identify pass, streamed writing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

from backend.domain.exports.deid import (
    DeidentificationProfile,
    Pseudonymiser,
    deidentify,
    quasi_identifiers,
)
from backend.domain.exports.kanon import KAnonymityDecision, KAnonymityPolicy, k_anonymity_gate
from backend.domain.exports.records import DeidentifiedBatch, PatientTimeline, merge_batches
from backend.domain.exports.writers import (
    Compression,
    ExportDescription,
    ExportFormats,
    ExportResult,
    write_export,
)

ALL_FORMATS = ExportFormats(parquet=True, csv=True, fhir_ndjson=True)


def gate(
    timelines: Iterable[PatientTimeline],
    profile: DeidentificationProfile,
    policy: KAnonymityPolicy | None = None,
) -> KAnonymityDecision:
    cohort = {}
    for timeline in timelines:
        qi = quasi_identifiers(timeline, profile)
        if qi is not None:
            cohort[timeline.patient.patient_id] = qi
    return k_anonymity_gate(cohort, policy or KAnonymityPolicy())


def batches(
    timelines: Iterable[PatientTimeline],
    *,
    profile: DeidentificationProfile,
    decision: KAnonymityDecision,
    key: bytes,
    patients_per_batch: int = 25,
) -> Iterator[DeidentifiedBatch]:
    pseudonymiser = Pseudonymiser(key)
    rows = (
        deidentify(t, profile=profile, decision=decision, pseudonymiser=pseudonymiser)
        for t in timelines
    )
    while chunk := list(islice(rows, patients_per_batch)):
        yield merge_batches(chunk)


def run_export(
    timelines: Sequence[PatientTimeline],
    directory: Path,
    *,
    key: bytes,
    profile: DeidentificationProfile | None = None,
    policy: KAnonymityPolicy | None = None,
    compression: Compression = "zstd",
    formats: ExportFormats = ALL_FORMATS,
) -> ExportResult:
    profile = profile or DeidentificationProfile()
    decision = gate(timelines, profile, policy)
    return write_export(
        batches(timelines, profile=profile, decision=decision, key=key),
        directory,
        ExportDescription(
            name="test-study",
            profile=profile,
            k_anonymity=decision.report,
            software_version="0.0.0-test",
        ),
        formats=formats,
        compression=compression,
    )
