"""The cache of unwrapped data keys: bounded in size (LRU) and lifetime (TTL), purged at erasure."""

import threading

import pytest

from backend.crypto import DekCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _key(n: int) -> bytes:
    return bytes([n]) * 32


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_returns_what_was_stored(clock: FakeClock) -> None:
    cache = DekCache(clock=clock)
    cache.put("p1", 1, _key(1))
    assert cache.get("p1", 1) == _key(1)
    assert cache.get("p1", 2) is None
    assert cache.get("p2", 1) is None


def test_size_bound_evicts_the_least_recently_used(clock: FakeClock) -> None:
    cache = DekCache(max_entries=3, clock=clock)
    for n in range(3):
        cache.put(f"p{n}", 1, _key(n))
    assert cache.get("p0", 1) == _key(0)  # p0 is now the most recently used
    cache.put("p3", 1, _key(3))
    assert len(cache) == 3
    assert cache.get("p1", 1) is None
    assert cache.get("p0", 1) == _key(0)
    assert cache.get("p2", 1) == _key(2)
    assert cache.get("p3", 1) == _key(3)


def test_size_never_exceeds_the_bound(clock: FakeClock) -> None:
    cache = DekCache(max_entries=10, clock=clock)
    for n in range(100):
        cache.put(f"p{n}", 1, _key(n % 256))
    assert len(cache) == 10


def test_entries_expire_after_the_ttl(clock: FakeClock) -> None:
    cache = DekCache(ttl_seconds=300, clock=clock)
    cache.put("p1", 1, _key(1))
    clock.now += 299.9
    assert cache.get("p1", 1) == _key(1)
    clock.now += 0.1
    assert cache.get("p1", 1) is None
    assert len(cache) == 0


def test_use_does_not_extend_the_lifetime(clock: FakeClock) -> None:
    cache = DekCache(ttl_seconds=10, clock=clock)
    cache.put("p1", 1, _key(1))
    for _ in range(9):
        clock.now += 1
        assert cache.get("p1", 1) is not None
    clock.now += 1
    assert cache.get("p1", 1) is None


def test_storing_again_restarts_the_lifetime(clock: FakeClock) -> None:
    cache = DekCache(ttl_seconds=10, clock=clock)
    cache.put("p1", 1, _key(1))
    clock.now += 8
    cache.put("p1", 1, _key(1))
    clock.now += 8
    assert cache.get("p1", 1) == _key(1)


def test_purge_expired_drops_only_expired_entries(clock: FakeClock) -> None:
    cache = DekCache(ttl_seconds=10, clock=clock)
    cache.put("old", 1, _key(1))
    clock.now += 6
    cache.put("new", 1, _key(2))
    clock.now += 5
    assert cache.purge_expired() == 1
    assert cache.get("new", 1) == _key(2)
    assert len(cache) == 1


def test_invalidate_drops_every_version_of_one_patient_only(clock: FakeClock) -> None:
    cache = DekCache(clock=clock)
    cache.put("p1", 1, _key(1))
    cache.put("p1", 2, _key(2))
    cache.put("p2", 1, _key(3))
    assert cache.invalidate("p1") == 2
    assert cache.get("p1", 1) is None
    assert cache.get("p1", 2) is None
    assert cache.get("p2", 1) == _key(3)
    assert cache.invalidate("p1") == 0


def test_a_key_unwrapped_before_erasure_is_not_cached_after_it(clock: FakeClock) -> None:
    cache = DekCache(clock=clock)
    generation = cache.generation  # read before fetching the wrapped key
    cache.invalidate("p1")  # erasure completes while the unwrap is in flight
    assert cache.put("p1", 1, _key(1), generation=generation) is False
    assert cache.get("p1", 1) is None
    assert cache.put("p1", 1, _key(1), generation=cache.generation) is True


def test_clear_empties_the_cache(clock: FakeClock) -> None:
    cache = DekCache(clock=clock)
    cache.put("p1", 1, _key(1))
    generation = cache.generation
    cache.clear()
    assert len(cache) == 0
    assert cache.put("p1", 1, _key(1), generation=generation) is False


def test_default_clock_is_monotonic() -> None:
    cache = DekCache(ttl_seconds=60)
    cache.put("p1", 1, _key(1))
    assert cache.get("p1", 1) == _key(1)


@pytest.mark.parametrize(("size", "ttl"), [(0, 10.0), (1, 0.0), (1, -1.0)])
def test_bounds_must_be_positive(size: int, ttl: float) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - two distinct messages
        DekCache(max_entries=size, ttl_seconds=ttl)


def test_repr_shows_no_keys(clock: FakeClock) -> None:
    cache = DekCache(clock=clock)
    cache.put("p1", 1, _key(0xAB))
    assert "ab" * 4 not in repr(cache).lower()
    assert "\\xab" not in repr(cache)


def test_concurrent_use_keeps_the_bound() -> None:
    cache = DekCache(max_entries=50)

    def work(offset: int) -> None:
        for n in range(2000):
            patient = f"p{(n + offset) % 200}"
            if cache.get(patient, 1) is None:
                cache.put(patient, 1, _key(n % 256))
            if n % 97 == 0:
                cache.invalidate(patient)

    threads = [threading.Thread(target=work, args=(i * 13,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 50
