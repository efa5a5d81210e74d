"""The bench's table writer, on made-up figures (no system, nothing timed)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench.report import Target, latency, table, throughput  # noqa: E402


def test_writes_one_row_per_figure_with_its_verdict_and_ratio_to_the_limit() -> None:
    figures = [
        throughput(
            "read one record",
            "throughput",
            "req/s",
            [900.0, 1100.0, 1200.0],
            [40.0, 45.0, 60.0],
            targets=(Target("median", 1000, True), Target("p99", 50, False)),
            limit=2200.0,
            limit_name="bare Flask",
        ),
        latency(
            "revocation",
            "to first 403",
            [100.0, 200.0, 1500.0],
            runs=1,
            targets=(Target("p99", 1000, False),),
        ),
    ]

    lines = table(figures, "# header").splitlines()

    rows = [line for line in lines if line.startswith("| read") or line.startswith("| revo")]
    assert len(rows) == 2
    assert all(row.count("|") == lines[2].count("|") for row in rows)
    assert "1,100 req/s" in rows[0] and "45.0 ms" in rows[0] and "| met |" in rows[0]
    assert "0.50" in rows[0]  # 1100 / 2200
    assert "**missed**" in rows[1] and "1,500 ms" in rows[1]
