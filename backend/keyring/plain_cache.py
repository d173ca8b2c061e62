"""A bounded, expiring cache of values decoded from encrypted rows (the alert engine's history).

Every submission re-reads the patient's history for the stateless alert rules; decrypting and
decoding each stored response again made a submission's cost grow with the patient's history.
Rows are immutable once written (answers are never edited), so what a row's ciphertexts decoded to
can be kept and reused, on three conditions that keep the encryption guarantees:

- an entry is used only when the ciphertexts read now are byte-for-byte the ones it was decoded
  from: a row re-encrypted by DEK rotation, or tampered with, is decrypted (and checked) again;
- the same bounds as the unwrapped-key cache (`DekCache`): at most `max_entries`, each for at
  most `ttl_seconds` from when it was stored;
- erasure drops the owner's entries (`Keyring.shred`). Another instance may hold entries for an
  erased owner until they expire, like its unwrapped keys; callers check the owner's status first
  (an erased patient's history is never evaluated).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DecodedRowCache"]

T = TypeVar("T")

_Key = tuple[str, str, str]  # owner, table, row id


class DecodedRowCache:
    """LRU + TTL; thread-safe (a lock held only around dict operations, never while decoding)."""

    __slots__ = ("_clock", "_entries", "_generation", "_lock", "_max_entries", "_ttl")

    def __init__(
        self,
        *,
        max_entries: int = 20_000,
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
        self._entries: OrderedDict[_Key, tuple[float, tuple[bytes, ...], object]] = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by `invalidate`: a value decoded while an erasure landed is not stored after it.
        self._generation = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get_or_decode(
        self,
        owner: str,
        table: str,
        row_id: str,
        ciphertexts: tuple[bytes, ...],
        decode: Callable[[], T],
        kind: type[T],
    ) -> T:
        """The value decoded from exactly these ciphertexts, decoding (and storing) on a miss.

        ``kind`` is checked on a hit, so two callers caching different shapes for one row never
        hand each other the wrong type (the later one decodes again and replaces the entry).
        """
        key = (owner, table, row_id)
        now = self._clock()
        with self._lock:
            generation = self._generation
            entry = self._entries.get(key)
            if entry is not None:
                stored_at, stored_ciphertexts, value = entry
                if (
                    now - stored_at < self._ttl
                    and stored_ciphertexts == ciphertexts
                    and isinstance(value, kind)
                ):
                    self._entries.move_to_end(key)
                    return value
                del self._entries[key]
        decoded = decode()  # outside the lock: decryption raises loudly on a bad row
        with self._lock:
            if generation != self._generation:
                return decoded
            self._entries[key] = (now, ciphertexts, decoded)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return decoded

    def invalidate(self, owner: str) -> int:
        """Drop every entry of one owner (erasure); returns how many were dropped."""
        with self._lock:
            self._generation += 1
            doomed = [key for key in self._entries if key[0] == owner]
            for key in doomed:
                del self._entries[key]
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
