"""The bench's table writer, on made-up figures (no system, nothing timed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench.peer import PeerData  # noqa: E402
from bench.report import Target, latency, paired_ratio, table, throughput  # noqa: E402
from bench.run import Bench, Plan, steps_of  # noqa: E402
from caretrail.system import System  # noqa: E402


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


def test_a_ratio_target_compares_the_median_with_the_limit_measured_beside_it() -> None:
    half_of_flask = (Target("ratio", 0.5, True),)

    fast = throughput("read", "t", "req/s", [1100.0], targets=half_of_flask, limit=2000.0)
    slow = throughput("read", "t", "req/s", [900.0], targets=half_of_flask, limit=2000.0)
    unmeasured = throughput("list", "t", "req/s", [900.0], targets=half_of_flask)

    assert fast.verdict == "met"
    assert slow.verdict == "**missed**"
    assert unmeasured.verdict == "?"  # the limit's scenario failed: no verdict, not a pass
    row = table([slow], "# h").splitlines()[-1]
    assert "≥ 0.50 × limit" in row and "0.45" in row


def test_a_lag_row_is_missed_when_any_run_took_longer_than_the_target() -> None:
    each_run = (Target("max", 5, False),)

    kept_up = throughput("read", "lag back to 0", "s", [0.7, 1.2, 4.9], targets=each_run)
    one_late = throughput("read", "lag back to 0", "s", [0.7, 1.2, 6.0], targets=each_run)

    assert kept_up.verdict == "met"
    assert one_late.verdict == "**missed**"  # although the median, 1.2 s, is under 5 s
    assert "each run ≤ 5.00 s" in table([one_late], "# h")


def test_caretrail_over_the_peer_is_the_median_of_each_pair_of_runs() -> None:
    figure = paired_ratio(
        "read",
        "caretrail / peer",
        [400.0, 300.0, 500.0],
        [800.0, 200.0, 500.0],
        targets=(Target("median", 1.0, True),),
    )

    assert (figure.median, figure.low, figure.high, figure.runs) == (1.0, 0.5, 1.5, 3)
    assert figure.verdict == "met"
    row = table([figure], "# h").splitlines()[-1]
    assert "| 1.00 × |" in row and "0.50–1.50 (3)" in row


def test_no_ratio_without_a_peer_run_for_each_of_ours() -> None:
    with pytest.raises(ValueError):
        paired_ratio("read", "caretrail / peer", [400.0, 300.0], [800.0])
    with pytest.raises(ValueError):
        paired_ratio("read", "caretrail / peer", [400.0], [0.0])  # the peer answered nothing


def test_the_peer_loads_send_paths_under_the_fhir_base_to_its_origin() -> None:
    peer = PeerData("http://127.0.0.1:8090/fhir/", "HAPI FHIR Server 8.8.0", ["7"], ["3"], "9")

    read, search, create = peer.read_load(), peer.search_load(), peer.create_load(seed=1)

    assert {read.base_url, search.base_url, create.base_url} == {"http://127.0.0.1:8090"}
    assert read.paths == ["/fhir/Observation/7"]
    assert search.paths == ["/fhir/Observation?patient=9&_count=20"]
    assert (create.method, create.paths) == ("POST", ["/fhir/Observation"])
    assert create.body is not None
    body = json.loads(create.body)
    assert body["resourceType"] == "Observation"
    assert body["subject"] == {"reference": "Patient/3"}


def test_only_runs_the_scenarios_named_in_the_bench_order_stopping_the_workers_for_a_rebuild(
    tmp_path: Path,
) -> None:
    bench = Bench(System(tmp_path), Plan.of(quick=True), seed=1, trail_size=1)

    assert [name for name, _ in steps_of(bench, ["write", "read"])] == [
        "read one record + memory + bare Flask",
        "write a record",
    ]
    assert [name for name, _ in steps_of(bench, ["rebuild"])] == [
        "stop the workers",  # a rebuild must not race the audit worker
        "audit rebuild",
    ]
