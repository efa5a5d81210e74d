"""Peak resident memory of the system's processes, sampled while a load runs."""

from __future__ import annotations

import threading
from collections import defaultdict

import psutil


class PeakRss:
    """Samples the RSS of every process of the system (gunicorn workers included) until
    stopped; `peaks` answers the largest single process of each kind, in MB."""

    def __init__(self, roots: dict[str, int], interval_seconds: float = 0.25) -> None:
        self._roots = roots  # "records-web" -> pid of its gunicorn master, "broker" -> pid...
        self._interval = interval_seconds
        self._peaks: dict[str, float] = defaultdict(float)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, pid in self._roots.items():
                for label, process in _processes(name, pid):
                    try:
                        rss = process.memory_info().rss / 2**20
                    except psutil.Error:
                        continue
                    self._peaks[label] = max(self._peaks[label], rss)
            self._stop.wait(self._interval)

    @property
    def peaks(self) -> dict[str, float]:
        """Largest RSS (MB) seen of one process of each kind: web worker, worker, broker."""
        kinds: dict[str, float] = defaultdict(float)
        for label, mb in self._peaks.items():
            kind = "web" if label.endswith("web worker") else label.rsplit(" ", 1)[-1]
            kinds[kind] = max(kinds[kind], mb)
        return dict(kinds)

    @property
    def by_process(self) -> dict[str, float]:
        return dict(self._peaks)


def _processes(name: str, pid: int) -> list[tuple[str, psutil.Process]]:
    try:
        root = psutil.Process(pid)
        children = root.children(recursive=True)
    except psutil.Error:
        return []
    if name.endswith("-web"):
        # The gunicorn master only forks; the workers answer requests.
        return [(f"{name} master", root)] + [(f"{name} web worker", c) for c in children]
    kind = "broker" if name == "broker" else "worker"
    return [(f"{name} {kind}", root)] + [(f"{name} {kind}", c) for c in children]
