"""The writer streams: ten times the rows must not need ten times the memory.

tracemalloc sees Python allocations (rows, buffers, FHIR dicts), which is where an accidental
"collect everything first" would show; Arrow's own buffers are freed per row group.
"""

from __future__ import annotations

import secrets
import tracemalloc
from pathlib import Path

from backend.domain.exports.deid import DeidentificationProfile
from backend.domain.exports.writers import ExportDescription, write_export
from tests.exports.pipeline import ALL_FORMATS, batches, gate
from tests.exports.synthetic import stream

# Sessions, patient, 8 responses x 10 rows, side effects, per session 2 blood-pressure values
# and one MOAA/S.
ROWS_PER_PATIENT = 4 + 1 + 4 * 2 * 10 + 4 + 4 * 3


def _peak_bytes(patients: int, directory: Path) -> tuple[int, int]:
    profile = DeidentificationProfile()
    decision = gate(stream(patients), profile)
    description = ExportDescription(
        name="memory", profile=profile, k_anonymity=decision.report, software_version="test"
    )
    key = secrets.token_bytes(32)
    tracemalloc.start()
    try:
        result = write_export(
            batches(stream(patients), profile=profile, decision=decision, key=key),
            directory,
            description,
            formats=ALL_FORMATS,
            row_group_rows=4096,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, sum(result.row_counts.values())


def test_peak_memory_does_not_grow_with_the_number_of_rows(tmp_path: Path) -> None:
    small_peak, small_rows = _peak_bytes(225, tmp_path / "small")
    large_peak, large_rows = _peak_bytes(2250, tmp_path / "large")
    assert small_rows == 225 * ROWS_PER_PATIENT >= 20_000
    assert large_rows == 2250 * ROWS_PER_PATIENT >= 200_000
    # Generous: 10x the rows may cost at most 1.5x the peak (a linear writer would need ~10x).
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)
