"""A bounded, expiring cache of unwrapped data keys (engineering-notes §D.7, decrypt path step 3).

Unwrapping costs a KEK operation (a network round trip with a KMS), so it is paid once per patient
per lifetime here. The bounds exist because every cached entry is a plaintext key in memory: the
size bound caps how many, the lifetime caps for how long, and `invalidate` drops a patient's keys
at erasure (crypto-shredding) without waiting for the lifetime to end.

Python cannot reliably wipe `bytes`, so evicted keys linger until garbage collection; the bounds
keep that window and the count small.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["DekCache"]


class DekCache:
    """LRU + TTL cache of DEKs keyed by (patient_id, dek_version).

    Thread-safe: every operation holds a lock and never awaits, so it can be shared by the event
    loop and worker threads. The lifetime counts from when the key was stored, not from its last
    use, so a busy patient's key is still re-unwrapped (and re-checked against the KEK) regularly.

    Erasure races: a key unwrapped just before `invalidate` must not be stored just after it. Read
    `generation` before fetching the wrapped key and pass it to `put`; the put is ignored if any
    invalidation or clear happened in between.
    """

    __slots__ = ("_clock", "_entries", "_generation", "_lock", "_max_entries", "_ttl")

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        ttl_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be positive")
        self._max_entries = max_entries
        self._ttl = float(ttl_seconds)
        self._clock = clock
        self._entries: OrderedDict[tuple[str, int], tuple[float, bytes]] = OrderedDict()
        self._generation = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DekCache(entries={len(self)}, max_entries={self._max_entries}, ttl={self._ttl})"

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def generation(self) -> int:
        """Changes on every `invalidate` and `clear`; see the class docstring."""
        with self._lock:
            return self._generation

    def get(self, patient_id: str, dek_version: int) -> bytes | None:
        """The cached key, or None if absent or expired (an expired entry is dropped)."""
        key = (patient_id, dek_version)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored_at, dek = entry
            if self._clock() - stored_at >= self._ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return dek

    def put(
        self, patient_id: str, dek_version: int, dek: bytes, *, generation: int | None = None
    ) -> bool:
        """Store a key; returns False (and stores nothing) if `generation` is stale."""
        key = (patient_id, dek_version)
        with self._lock:
            if generation is not None and generation != self._generation:
                return False
            self._entries[key] = (self._clock(), dek)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            return True

    def invalidate(self, patient_id: str) -> int:
        """Drop every cached version of one patient's key; returns how many were dropped."""
        with self._lock:
            self._generation += 1
            doomed = [key for key in self._entries if key[0] == patient_id]
            for key in doomed:
                del self._entries[key]
            return len(doomed)

    def purge_expired(self) -> int:
        """Drop every expired entry now rather than on next access; returns how many."""
        with self._lock:
            now = self._clock()
            doomed = [key for key, (at, _) in self._entries.items() if now - at >= self._ttl]
            for key in doomed:
                del self._entries[key]
            return len(doomed)

    def clear(self) -> None:
        """Drop everything (KEK rotation, shutdown, tests)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
