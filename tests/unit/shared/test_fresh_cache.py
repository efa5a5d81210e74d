"""The per-process cache answers only values of the version a reader's snapshot saw."""

from __future__ import annotations

from shared.fresh_cache import VersionedCache


class Loads:
    """A loader that counts its calls and answers what the database holds now."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        return self.value


def test_a_value_is_loaded_once_per_version():
    cache: VersionedCache[object] = VersionedCache()
    load = Loads("granted")

    assert cache.get(1, "alice", load) == "granted"
    assert cache.get(1, "alice", load) == "granted"
    assert load.calls == 1


def test_a_newer_version_never_answers_the_older_value():
    cache: VersionedCache[object] = VersionedCache()
    cache.get(1, "alice", Loads("granted"))

    assert cache.get(2, "alice", Loads("revoked")) == "revoked"
    assert cache.get(2, "alice", Loads("unused")) == "revoked"


def test_a_reader_of_an_older_snapshot_does_not_store_its_stale_value():
    cache: VersionedCache[object] = VersionedCache()
    cache.get(2, "alice", Loads("revoked"))

    # A request whose snapshot predates the revocation loads what it saw...
    assert cache.get(1, "alice", Loads("granted")) == "granted"
    # ...and the readers of the newer snapshot are not handed it.
    assert cache.get(2, "alice", Loads("unused")) == "revoked"


def test_an_absent_row_is_looked_up_again_since_it_may_appear_without_a_bump():
    cache: VersionedCache[object] = VersionedCache()
    load = Loads(None)
    assert cache.get(1, "new-chart", load) is None
    load.value = "key"
    assert cache.get(1, "new-chart", load) == "key"
    assert load.calls == 2


def test_a_full_cache_starts_afresh_rather_than_growing():
    cache: VersionedCache[object] = VersionedCache(capacity=2)
    for patient in ("a", "b", "c"):
        cache.get(1, patient, Loads(patient))
    load = Loads("a")
    cache.get(1, "a", load)
    assert load.calls == 1  # dropped when the cache filled
    assert cache.get(1, "c", Loads("unused")) == "c"
