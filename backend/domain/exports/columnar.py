"""The observations table built column by column: the export's hot path.

A million responses are ten million observation rows. Building a Python object per row and
reading it back attribute by attribute costs more than decrypting (engineering-notes §E.6), so
the write pass builds the observations of a whole group of patients as Arrow columns: the values
shared by a response's rows (study id, record id, instrument, treatment-relative time) once per
response, the item values once per item, and Arrow's `take` repeats the former for the latter.
The rows, their order (a response's items in stored order, then its total) and their values are
exactly those of `deid.deidentify` (`tests/exports/test_columnar.py` compares the two).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from itertools import accumulate
from typing import Any, Final, Protocol

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from backend.domain.exports.deid import (
    DeidentificationProfile,
    PatientContext,
    Pseudonymiser,
)

_NO_ROWS: Final = 0


class Answer(Protocol):
    @property
    def link_id(self) -> str: ...

    @property
    def value(self) -> bool | int | float | str: ...


class Score(Protocol):
    @property
    def total(self) -> int | None: ...

    @property
    def band(self) -> str | None: ...

    @property
    def prorated(self) -> bool: ...


class ObservationColumns:
    """Collects responses (already decrypted and decoded) and builds the observations batch."""

    def __init__(self, profile: DeidentificationProfile, pseudonymiser: Pseudonymiser) -> None:
        self._profile = profile
        self._pseudonymiser = pseudonymiser
        self._study_id: list[str] = []
        self._record_id: list[str] = []
        self._instrument_id: list[str] = []
        self._instrument_version: list[str] = []
        self._scorer_version: list[str] = []
        self._course_index: list[int | None] = []
        self._session_index: list[int | None] = []
        self._hours_since_session: list[float | None] = []
        self._hours_since_course_start: list[float | None] = []
        self._day_since_course_start: list[int | None] = []
        self._shifted: list[dt.datetime | None] = []
        self._total: list[float | None] = []
        self._band: list[str | None] = []
        self._prorated: list[bool] = []
        self._answers: list[Sequence[Answer]] = []
        self.instruments: set[tuple[str, str, str]] = set()

    def __len__(self) -> int:
        return len(self._record_id)

    def add_patient(
        self,
        context: PatientContext,
        *,
        response_ids: Sequence[bytes],
        authored: Sequence[dt.datetime],
        instrument_ids: Sequence[str],
        instrument_versions: Sequence[str],
        scorer_versions: Sequence[str],
        answers: Sequence[Sequence[Answer]],
        scores: Sequence[Score],
    ) -> None:
        """One patient's responses, in the order they are to be exported (by time answered).
        Parallel sequences, one entry per response; `response_ids` as the ids' 16 bytes."""
        n = len(response_ids)
        record_ids = self._pseudonymiser.record_ids_of_bytes
        place = context.clock.place
        self._study_id += [context.study_id] * n
        self._record_id += record_ids("response", response_ids)
        self._instrument_id += instrument_ids
        self._instrument_version += instrument_versions
        self._scorer_version += scorer_versions
        if n:
            course, session, since_session, since_start, day = zip(
                *[place(at) for at in authored], strict=True
            )
            self._course_index += course
            self._session_index += session
            self._hours_since_session += since_session
            self._hours_since_course_start += since_start
            self._day_since_course_start += day
        shift = context.shift
        if shift is None:
            self._shifted += [None] * n
        else:
            self._shifted += [(at + shift).astimezone(dt.UTC) for at in authored]
        self._total += [None if s.total is None else float(s.total) for s in scores]
        self._band += [s.band for s in scores]
        self._prorated += [s.prorated for s in scores]
        self._answers += answers
        self.instruments.update(
            zip(instrument_ids, instrument_versions, scorer_versions, strict=True)
        )

    def batch(self, schema: pa.Schema) -> pa.RecordBatch | None:
        """The observation rows of everything added, in `schema`'s column order."""
        responses = len(self._record_id)
        if responses == _NO_ROWS:
            return None
        items = self._items()
        if items is None:
            return None
        counts, variables, values, kinds, texts = items
        item_rows = len(variables)
        # Final row p belongs to response P[p] at offset k within that response's block of
        # counts[P] items and one total; it takes item (item_start[P] + k) or total P.
        item_start = pa.array(list(accumulate(counts, initial=0))[:-1], pa.int64())
        block_start = pa.array(list(accumulate((n + 1 for n in counts), initial=0)), pa.int64())
        parents = pc.list_parent_indices(
            pa.ListArray.from_arrays(block_start, pa.nulls(int(block_start[-1].as_py())))
        )
        offset = pc.subtract(
            pa.array(range(len(parents)), pa.int64()), pc.take(block_start, parents)
        )
        is_total = pc.equal(offset, pc.take(pa.array(counts, pa.int64()), parents))
        gather = pc.if_else(
            is_total,
            pc.add(parents, item_rows),
            pc.add(pc.take(item_start, parents), offset),
        )
        null_str = pa.nulls(responses, pa.string())
        columns: dict[str, pa.Array] = {
            "study_id": pc.take(pa.array(self._study_id, pa.string()), parents),
            "record_id": pc.take(pa.array(self._record_id, pa.string()), parents),
            "kind": pc.take(
                pa.concat_arrays(
                    [pa.array(kinds, pa.string()), pa.array(["total"] * responses, pa.string())]
                ),
                gather,
            ),
            "instrument_id": pc.take(pa.array(self._instrument_id, pa.string()), parents),
            "instrument_version": pc.take(pa.array(self._instrument_version, pa.string()), parents),
            "scorer_version": pc.take(pa.array(self._scorer_version, pa.string()), parents),
            "variable": pc.take(
                pa.concat_arrays(
                    [
                        pa.array(variables, pa.string()),
                        pa.array(["total"] * responses, pa.string()),
                    ]
                ),
                gather,
            ),
            "value": pc.take(
                pa.concat_arrays([values, pa.array(self._total, pa.float64())]), gather
            ),
            "value_text": pc.take(pa.concat_arrays([texts, null_str]), gather),
            "band": pc.if_else(is_total, pc.take(pa.array(self._band, pa.string()), parents), None),
            "prorated": pc.if_else(
                is_total, pc.take(pa.array(self._prorated, pa.bool_()), parents), None
            ),
            "course_index": pc.take(pa.array(self._course_index, pa.int32()), parents),
            "session_index": pc.take(pa.array(self._session_index, pa.int32()), parents),
            "hours_since_session": pc.take(
                pa.array(self._hours_since_session, pa.float64()), parents
            ),
            "hours_since_course_start": pc.take(
                pa.array(self._hours_since_course_start, pa.float64()), parents
            ),
            "day_since_course_start": pc.take(
                pa.array(self._day_since_course_start, pa.int32()), parents
            ),
            "shifted_time": pc.take(pa.array(self._shifted, pa.timestamp("us", tz="UTC")), parents),
        }
        return pa.RecordBatch.from_arrays(
            [columns[field.name].cast(field.type) for field in schema], schema=schema
        )

    def _items(
        self,
    ) -> tuple[list[int], list[str], pa.Array, list[str], pa.Array] | None:
        """(items per response, variables, values, kinds, texts) of the exported answers."""
        answers = self._answers
        flat = [a for group in answers for a in group]
        values: list[Any] = [a.value for a in flat]
        try:
            numbers = pa.array(values, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return self._items_with_text()
        return (
            [len(group) for group in answers],
            [a.link_id for a in flat],
            numbers,
            ["item"] * len(flat),
            pa.nulls(len(flat), pa.string()),
        )

    def _items_with_text(
        self,
    ) -> tuple[list[int], list[str], pa.Array, list[str], pa.Array]:
        # Some answer is text (a free-text item): dropped unless the export opted in (§E.1).
        keep_text = self._profile.include_free_text
        counts: list[int] = []
        variables: list[str] = []
        values: list[float | None] = []
        kinds: list[str] = []
        texts: list[str | None] = []
        for group in self._answers:
            n = 0
            for answer in group:
                value = answer.value
                if isinstance(value, str):
                    if not keep_text:
                        continue
                    kinds.append("free_text")
                    values.append(None)
                    texts.append(value)
                else:
                    kinds.append("item")
                    values.append(float(value))
                    texts.append(None)
                variables.append(answer.link_id)
                n += 1
            counts.append(n)
        return (
            counts,
            variables,
            pa.array(values, pa.float64()),
            kinds,
            pa.array(texts, pa.string()),
        )
