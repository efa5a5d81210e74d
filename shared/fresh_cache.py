"""A per-process cache that is fresh by construction.

Every entry belongs to one version of the database's state: a counter that the database bumps
in the same transaction as every change the cached values depend on. A reader reads the
counter in its own snapshot and asks the cache for that version; an entry of another version
is never answered. So once a change has committed, any read whose snapshot includes it sees a
newer version and loads afresh, in whichever process it runs: no message between processes,
no time-to-live.

A reader whose snapshot is older than the cache's version (it began before the change) is
answered by its loader, uncached, so a stale value is never stored under a newer version.
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
        self._version = -1
        self._entries: dict[Hashable, V] = {}
        self._lock = threading.Lock()

    def get(self, version: int, key: Hashable, load: Callable[[], V]) -> V:
        """The value of `key` as of `version`, from the cache or from `load()` (run in the
        caller's snapshot, which includes `version`)."""
        if version == self._version:
            try:
                return self._entries[key]
            except KeyError:
                pass
        value = load()
        with self._lock:
            if version > self._version:
                self._version, self._entries = version, {}
            if version == self._version:
                if len(self._entries) >= self._capacity:
                    # Dropping all is simpler than LRU bookkeeping on every hit, and rare.
                    self._entries = {}
                self._entries[key] = value
        return value

    def forget(self, key: Hashable) -> None:
        """Drop one entry (this process's own change, before the version says so)."""
        with self._lock:
            self._entries.pop(key, None)
