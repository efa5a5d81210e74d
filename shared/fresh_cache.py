"""A per-process cache that is fresh by construction.

Every entry belongs to one version of the database's state: a counter that the database bumps
in the same transaction as every change the cached values depend on. A reader reads the
counter in its own snapshot and asks the cache for that version; an entry of another version
is never answered. So once a change has committed, any read whose snapshot includes it sees a
newer version and loads afresh, in whichever process it runs: no message between processes,
no time-to-live.

A reader whose snapshot is older than the cache's version (it began before the change) is
answered by its loader, uncached, so a stale value is never stored under a newer version.
None is never kept: it stands for a row that is not there yet, and a row may appear without a
version bump (a chart's first write), where caching its absence would hide it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class VersionedCache(Generic[V]):
    """Values keyed by anything hashable, valid for exactly one version of the database."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        # One attribute, swapped whole: a reader never pairs a version with another's entries.
        self._state: tuple[int, dict[Hashable, V]] = (-1, {})
        self._lock = threading.Lock()

    def get(self, version: int, key: Hashable, load: Callable[[], V]) -> V:
        """The value of `key` as of `version`, from the cache or from `load()` (run in the
        caller's snapshot, which includes `version`)."""
        cached_version, entries = self._state
        if version == cached_version and key in entries:
            return entries[key]
        value = load()
        if value is None:
            return value
        with self._lock:
            cached_version, entries = self._state
            if version > cached_version:
                cached_version, entries = version, {}
                self._state = (cached_version, entries)
            if version == cached_version:
                if len(entries) >= self._capacity:
                    # Starting afresh is simpler than LRU bookkeeping on every hit, and rare.
                    entries = {}
                    self._state = (cached_version, entries)
                entries[key] = value
        return value
