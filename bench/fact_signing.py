"""What signing a fact costs where it is paid: on the request that writes it (the outbox row
is signed when the fact is appended, `shared.events.to_kafka`) and in every consumer that
reads it (`shared.events.authenticity_problem`, the audit rebuild included).

    .venv/bin/python -m bench.fact_signing [--facts N] [--runs N] [--out FILE]

Each run times the same access facts (`bench.trail.access_fact`) as a Kafka record without
and with its signature, then parsed from Kafka without and with the check of it; the kinds
alternate within each run so they see the same machine state. CPU time of this one process.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.trail import access_fact
from shared.config import LOCAL_MODE_ENV
from shared.events import (
    Event,
    authenticity_problem,
    from_kafka,
    to_kafka,
    unsigned_record,
)
from shared.fact_signing import KEYS_DIR_ENV, FactKeys


def cpu_us_per_fact(facts: list[Event], work: Callable[[Event], object]) -> float:
    started = time.process_time()
    for fact in facts:
        work(fact)
    return (time.process_time() - started) * 1e6 / len(facts)


def measure(facts: list[Event], keys: FactKeys) -> dict[str, float]:
    """µs of CPU per fact for each step, signed and not."""
    records = {fact.id: to_kafka(fact) for fact in facts}

    def parse(fact: Event) -> Event:
        record = records[fact.id]
        return from_kafka(record.headers, record.key, record.value)

    def parse_and_check(fact: Event) -> None:
        if authenticity_problem(parse(fact), keys) is not None:
            raise AssertionError("a fact the bench signed does not verify")

    return {
        "write: record, unsigned": cpu_us_per_fact(facts, unsigned_record),
        "write: record, signed": cpu_us_per_fact(facts, to_kafka),
        "read: parse": cpu_us_per_fact(facts, parse),
        "read: parse + verify": cpu_us_per_fact(facts, parse_and_check),
    }


def table(runs: list[dict[str, float]]) -> str:
    medians = {step: statistics.median(run[step] for run in runs) for step in runs[0]}
    sign = medians["write: record, signed"] - medians["write: record, unsigned"]
    verify = medians["read: parse + verify"] - medians["read: parse"]
    lines = [
        f"Fact signing, CPU µs per access fact (median of {len(runs)} runs, one process)",
        "",
        "| step | µs per fact |",
        "|---|---:|",
        *(f"| {step} | {us:.1f} |" for step, us in medians.items()),
        f"| **signing adds** (on the request that appends the fact) | **{sign:.1f}** |",
        f"| **verifying adds** (in each consumer, and per event of a rebuild) | **{verify:.1f}** |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facts", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as keys_dir:
        # Throwaway keys, made on first use as a local system makes them.
        os.environ[LOCAL_MODE_ENV] = "1"
        os.environ[KEYS_DIR_ENV] = keys_dir
        keys = FactKeys.from_directory(Path(keys_dir))
        rng = random.Random(1)
        facts = [access_fact(rng, f"bench-sign-{n % 100}") for n in range(args.facts)]
        measure(facts[:200], keys)  # warm: keys loaded, caches filled
        runs = [measure(facts, keys) for _ in range(args.runs)]
    report = table(runs)
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
