"""Where a fact's time goes between processes, from the spans the services record.

Starts the whole system with a JSON-lines trace file, has Dr Kim read records one at a time at
`--rate` reads/s, stops it, then pairs each read's request span (records) with the consumer
spans of its `record.accessed` fact in audit and notify (one trace: the fact carries the
request's traceparent). Read answered → consumer span start is the relay, the broker and the
consumer's fetch; the span itself is the handler (its batch commits after it).

    .venv/bin/python -m bench.hops --rate 50 --reads 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import requests

from bench.data import Sizes, load
from bench.report import percentile
from caretrail.system import System
from shared.config import Settings

CONSUMERS = ("caretrail-audit", "caretrail-notify")


def read_at(urls: dict[str, str], rate: float, reads: int) -> None:
    data = load(urls, Settings.from_env("cli"), Sizes(20, 3, 10, 0.2, 0, 0), seed=1)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {data.tokens['reader']}"}
    paths = data.read_paths()
    for n in range(reads):
        session.get(urls["records"] + paths[n % len(paths)], headers=headers, timeout=30)
        time.sleep(1 / rate)


def hops(spans: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Per consumer: (ms from the read's answer to its fact's consumer span, span ms)."""
    traces: dict[str, list[dict]] = defaultdict(list)
    for span in spans:
        traces[span["trace_id"]].append(span)
    found: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for group in traces.values():
        reads = [s for s in group if s["service"] == "caretrail-records" and s["parent_id"] is None]
        if not reads:
            continue
        for span in group:
            if span["name"] == "consume record.accessed" and span["service"] in CONSUMERS:
                waited = (span["start_ns"] - reads[0]["end_ns"]) / 1e6
                found[span["service"]].append((waited, (span["end_ns"] - span["start_ns"]) / 1e6))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="caretrail-hops-"))
    trace_file = home / "traces.jsonl"
    system = System(home, extra_env={"CARETRAIL_TRACE_FILE": str(trace_file)})
    system.start()
    try:
        read_at({s: system.url(s) for s in system.ports}, args.rate, args.reads)
        time.sleep(5)  # let the last facts arrive
    finally:
        system.stop()
    spans = [json.loads(line) for line in trace_file.read_text().splitlines()]
    for service, pairs in sorted(hops(spans).items()):
        waited = [w for w, _ in pairs]
        handled = [h for _, h in pairs]
        print(
            f"{service}: {len(pairs)} facts; read answered → consumer span: "
            f"p50 {percentile(waited, 50):.1f} ms, p90 {percentile(waited, 90):.1f}, "
            f"max {max(waited):.1f}; the handler: p50 {percentile(handled, 50):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
