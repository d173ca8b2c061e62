"""One streaming pass from de-identified batches to an export bundle (engineering-notes §E.5-E.6):

    parquet/<table>.parquet   typed columns, one row group per `row_group_rows` rows
    csv/<table>.csv           the same tables as CSV (observations in long format)
    fhir/<Type>.ndjson        FHIR Bulk Data, one resource type per file (Patient,
                              QuestionnaireResponse, Observation, MedicationAdministration, Flag)
    datapackage.json          the codebook (Frictionless Data Package)
    README.md                 provenance, de-identification profile, k-anonymity
    MANIFEST.sha256           `sha256sum -c` compatible checksums of every other file

Memory is bounded by one buffered row group per table plus the batch in hand, whatever the size
of the export: rows are flushed with `ParquetWriter.write_batch` and `CSVWriter.write_batch` as
soon as a row group fills, and FHIR resources are written per batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

import msgspec
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from backend.domain.exports import fhir
from backend.domain.exports.codebook import (
    OBSERVATIONS,
    TABLES,
    InstrumentUsed,
    Table,
    datapackage,
)
from backend.domain.exports.deid import DeidentificationProfile
from backend.domain.exports.kanon import KAnonymityReport
from backend.domain.exports.readme import render_readme
from backend.domain.exports.records import DeidentifiedBatch, ObservationRow
from questionnaires.errors import UnknownInstrumentError
from questionnaires.registry import get_instrument

Compression = Literal["zstd", "snappy", "gzip", "none"]
MANIFEST = "MANIFEST.sha256"
_OPTIONAL = {"value_text": None, "shifted_time": None}
"""Observation columns a profile may leave out of the files."""
DEFAULT_ROW_GROUP_ROWS = 32_768
"""Arrow developers suggest 16k-32k rows per row group for filtered reads (ARROW-10052)."""


class ExportFormats(msgspec.Struct, frozen=True, kw_only=True):
    parquet: bool = True
    csv: bool = True
    fhir_ndjson: bool = False

    def __post_init__(self) -> None:
        if not (self.parquet or self.csv or self.fhir_ndjson):
            raise ValueError("an export needs at least one file format")


class ExportDescription(msgspec.Struct, frozen=True, kw_only=True):
    """What the bundle says about itself. `name` must carry no PHI (e.g. the study's slug)."""

    name: str
    profile: DeidentificationProfile
    k_anonymity: KAnonymityReport
    software_version: str


class ExportFile(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    """Relative to the export directory, with "/" separators."""
    size_bytes: int
    sha256: str


class ExportResult(msgspec.Struct, frozen=True, kw_only=True):
    files: tuple[ExportFile, ...]
    """Every file of the bundle but the manifest, which lists them."""
    row_counts: dict[str, int]
    fhir_resource_counts: dict[str, int]


def _statistics_columns(schema: pa.Schema) -> list[str]:
    """Columns whose row groups carry min/max statistics: the numbers and times (hours, days,
    session index, value: what readers filter on) and the study id (rows are in patient order,
    so its ranges prune). Not the other strings: record ids are random and every row group
    holds every kind, variable and instrument, so their min/max prune nothing, and computing
    them was ~25% of writing the observations."""
    return [f.name for f in schema if f.name == "study_id" or not pa.types.is_string(f.type)]


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns written dictionary-encoded: all but the record id. A record id is the same for a
    response's rows and for no other, so its dictionary holds nearly every value of the row group
    and saves nothing; hashing each value into it was ~4% of writing the observations, and plain
    values compress smaller. The values read back are the same."""
    return [name for name in schema.names if name != "record_id"]


class _TableSink:
    """Buffers one table's rows as Arrow batches and flushes a full row group to Parquet and
    CSV."""

    def __init__(
        self,
        table: Table,
        directory: Path,
        profile: DeidentificationProfile,
        formats: ExportFormats,
        compression: Compression,
        row_group_rows: int,
    ) -> None:
        self.table = table
        self.schema = table.schema(profile)
        self.names = self.schema.names
        self.row_group_rows = row_group_rows
        self.buffer: list[pa.RecordBatch] = []
        self.buffered = 0
        self.rows = 0
        self.parquet = (
            pq.ParquetWriter(
                directory / "parquet" / f"{table.name}.parquet",
                self.schema,
                compression=compression,
                use_dictionary=_dictionary_columns(self.schema),
                write_statistics=_statistics_columns(self.schema),
            )
            if formats.parquet
            else None
        )
        self.csv = (
            pa_csv.CSVWriter(directory / "csv" / f"{table.name}.csv", self.schema)
            if formats.csv
            else None
        )

    def add(self, rows: Sequence[msgspec.Struct]) -> None:
        if not rows:
            return
        columns = [
            pa.array([getattr(row, name) for row in rows], type=column.type)
            for name, column in zip(self.names, self.schema, strict=True)
        ]
        self.add_batch(pa.RecordBatch.from_arrays(columns, schema=self.schema))

    def add_batch(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self.buffer.append(batch)
        self.buffered += batch.num_rows
        # Full row groups only, whatever the sizes of the batches that filled them: a large
        # batch is cut, and the rest waits for the next one.
        while self.buffered >= self.row_group_rows:
            table = pa.Table.from_batches(self.buffer, schema=self.schema)
            self._write(table.slice(0, self.row_group_rows))
            rest = table.slice(self.row_group_rows)
            self.buffer = rest.to_batches()
            self.buffered = rest.num_rows

    def flush(self) -> None:
        if self.buffer:
            self._write(pa.Table.from_batches(self.buffer, schema=self.schema))
        self.buffer = []
        self.buffered = 0

    def _write(self, table: pa.Table) -> None:
        if self.parquet is not None:
            # One row group per call.
            self.parquet.write_table(table, row_group_size=table.num_rows)
        if self.csv is not None:
            self.csv.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self.flush()
        if self.parquet is not None:
            self.parquet.close()
        if self.csv is not None:
            self.csv.close()


@dataclass
class _FhirSink:
    directory: Path
    files: dict[str, IO[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def write(self, resources: Iterator[dict[str, Any]]) -> None:
        for resource in resources:
            kind = resource["resourceType"]
            if kind not in self.files:
                path = self.directory / "fhir" / f"{kind}.ndjson"
                self.files[kind] = path.open("w", encoding="utf-8", newline="\n")
                self.counts[kind] = 0
            self.files[kind].write(json.dumps(resource, separators=(",", ":")) + "\n")
            self.counts[kind] += 1

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


class ExportWriter:
    """Write an export bundle batch by batch; `write_export` is the one-call form.

    Use as a context manager; `finish()` writes the codebook, README and manifest. An export that
    fails midway leaves a directory without a manifest, which nothing should hand out.
    """

    def __init__(
        self,
        directory: Path,
        description: ExportDescription,
        *,
        formats: ExportFormats,
        compression: Compression = "zstd",
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    ) -> None:
        if directory.exists() and any(directory.iterdir()):
            raise FileExistsError("the export directory is not empty")
        self.directory = directory
        self.description = description
        self.formats = formats
        for sub, wanted in (("parquet", formats.parquet), ("csv", formats.csv)):
            if wanted:
                (directory / sub).mkdir(parents=True, exist_ok=True)
        if formats.fhir_ndjson:
            (directory / "fhir").mkdir(parents=True, exist_ok=True)
        directory.mkdir(parents=True, exist_ok=True)
        self._sinks: dict[str, _TableSink] = {}
        self._fhir = _FhirSink(directory) if formats.fhir_ndjson else None
        if formats.parquet or formats.csv:
            self._sinks = {
                t.name: _TableSink(
                    t, directory, description.profile, formats, compression, row_group_rows
                )
                for t in TABLES
            }
        self._fhir_rows = 0
        self._row_counts = {t.name: 0 for t in TABLES}
        # Bounded by the catalogue and the rule set, not by the export's size.
        self._instruments: set[tuple[str, str, str]] = set()
        self._rules: set[tuple[str, str]] = set()
        self._finished = False
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close()

    def write(self, batch: DeidentifiedBatch) -> None:
        tables: dict[str, tuple[msgspec.Struct, ...]] = {
            "patients": batch.patients,
            "sessions": batch.sessions,
            "observations": batch.observations,
            "alerts": batch.alerts,
        }
        for name, rows in tables.items():
            self._row_counts[name] += len(rows)
            if name in self._sinks:
                self._sinks[name].add(rows)
        for row in batch.observations:
            if row.instrument_id is not None:
                self._instruments.add(
                    (row.instrument_id, row.instrument_version or "", row.scorer_version or "")
                )
        self._rules.update((a.rule_id, a.rule_version) for a in batch.alerts)
        if self._fhir is not None:
            self._fhir.write(fhir.patient_resource(p) for p in batch.patients)
            self._fhir.write(fhir.medication_administration(s) for s in batch.sessions)
            self._fhir.write(fhir.observation_resources(batch.observations))
            self._fhir.write(fhir.flag(a) for a in batch.alerts)

    @property
    def observations_schema(self) -> pa.Schema:
        return OBSERVATIONS.schema(self.description.profile)

    def write_observations(
        self, batch: pa.RecordBatch, instruments: Iterable[tuple[str, str, str]]
    ) -> None:
        """Observation rows built as columns (`columnar.py`), in `observations_schema`. A
        response's rows must all be in the one batch (the FHIR writer groups them)."""
        self._row_counts["observations"] += batch.num_rows
        if "observations" in self._sinks:
            self._sinks["observations"].add_batch(batch)
        self._instruments.update(instruments)
        if self._fhir is not None:
            rows = [ObservationRow(**{**_OPTIONAL, **row}) for row in batch.to_pylist()]
            self._fhir.write(fhir.observation_resources(rows))

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sink in self._sinks.values():
            sink.close()
        if self._fhir is not None:
            self._fhir.close()

    def finish(self) -> ExportResult:
        if self._finished:
            raise RuntimeError("the export is already finished")
        self._finished = True
        self._close()
        resources: list[tuple[Table, str, str]] = []
        for table in TABLES:
            if self.formats.csv:
                resources.append((table, f"csv/{table.name}.csv", "csv"))
            if self.formats.parquet:
                resources.append((table, f"parquet/{table.name}.parquet", "parquet"))
        instruments = [_instrument_used(*key) for key in sorted(self._instruments)]
        rules = sorted(self._rules)
        fhir_counts = dict(sorted(self._fhir.counts.items())) if self._fhir is not None else {}
        package = datapackage(
            name=self.description.name,
            profile=self.description.profile,
            k_anonymity=self.description.k_anonymity,
            resources=resources,
            row_counts=self._row_counts,
            instruments=instruments,
            rules=rules,
            software_version=self.description.software_version,
        )
        if fhir_counts:
            package["fhir"] = [
                {"type": kind, "path": f"fhir/{kind}.ndjson", "count": count}
                for kind, count in fhir_counts.items()
            ]
        (self.directory / "datapackage.json").write_text(
            json.dumps(package, indent=2) + "\n", encoding="utf-8"
        )
        (self.directory / "README.md").write_text(
            render_readme(
                name=self.description.name,
                profile=self.description.profile,
                k_anonymity=self.description.k_anonymity,
                row_counts=self._row_counts,
                fhir_counts=fhir_counts,
                instruments=instruments,
                rules=rules,
                software_version=self.description.software_version,
            ),
            encoding="utf-8",
        )
        files = tuple(_checksum(self.directory, path) for path in _bundle_files(self.directory))
        (self.directory / MANIFEST).write_text(
            "".join(f"{f.sha256}  {f.path}\n" for f in files), encoding="utf-8"
        )
        return ExportResult(
            files=files, row_counts=dict(self._row_counts), fhir_resource_counts=fhir_counts
        )


def _instrument_used(instrument_id: str, version: str, scorer_version: str) -> InstrumentUsed:
    try:
        instrument = get_instrument(instrument_id, version)
    except UnknownInstrumentError:
        return InstrumentUsed(instrument_id, version, scorer_version, None, None, None, None)
    return InstrumentUsed(
        instrument_id,
        version,
        scorer_version,
        instrument.title,
        instrument.loinc_panel,
        instrument.loinc_total,
        instrument.licence.notice,
    )


def _bundle_files(directory: Path) -> list[str]:
    return sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.is_file() and path.name != MANIFEST
    )


def _checksum(directory: Path, relative: str) -> ExportFile:
    digest = hashlib.sha256()
    path = directory / relative
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return ExportFile(path=relative, size_bytes=path.stat().st_size, sha256=digest.hexdigest())


def write_export(
    batches: Iterable[DeidentifiedBatch],
    directory: Path,
    description: ExportDescription,
    *,
    formats: ExportFormats | None = None,
    compression: Compression = "zstd",
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    on_batch: Callable[[int], None] | None = None,
) -> ExportResult:
    """Stream `batches` into a complete bundle under `directory` (created; must be empty).
    `on_batch(rows_so_far)` after each batch lets a job report progress."""
    written = 0
    with ExportWriter(
        directory,
        description,
        formats=formats or ExportFormats(),
        compression=compression,
        row_group_rows=row_group_rows,
    ) as writer:
        for batch in batches:
            writer.write(batch)
            written += (
                len(batch.patients)
                + len(batch.sessions)
                + len(batch.observations)
                + len(batch.alerts)
            )
            if on_batch is not None:
                on_batch(written)
        return writer.finish()
