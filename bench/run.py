"""`caretrail bench`: start a fresh system, load it, run every scenario, write the table.

Each scenario is isolated: one that fails is reported as failed on the page and the others
still run. See bench/README.md for what each one does.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench import facts, kafka_tools, recovery, report, trail
from bench.data import Dataset, Sizes, load, resource
from bench.flame import FlameGraph
from bench.lag import ConsumerLag, drain
from bench.memory import PeakRss
from bench.peer import PeerData, load_peer
from bench.report import Figure, Target, latency, paired_ratio, throughput
from bench.wrk import Load, Run, WrkMissing, require_wrk
from caretrail.kafka_cluster import KafkaCluster
from caretrail.kafka_server import free_port
from caretrail.system import BIN, ROOT, SERVICES, System
from shared.broker import make_producer
from shared.config import Settings
from shared.db import make_engine
from shared.outbox import OutboxRelay

WEB_WORKERS = 2  # one per core: the machine has 2
# Fact latency is measured at half the read rate just measured (the target), then at
# a rate the stack answers in full on 2 cores; at 200 req/s if the read run gave no rate.
UNSATURATED_RATE = 50.0
FALLBACK_RATE = 200.0
CONNECTIONS = 32
# Audit and notify keep up if their lag is back to 0 this soon after a run (issue 12).
LAG_TARGET_SECONDS = 5.0
LAG_TIMEOUT_SECONDS = 120.0
BARE_FLASK = "bare Flask, same gunicorn config"
RECOVERY_RATE = 10.0  # a steady mixed load, not a saturating one: the figures are of recovery


@dataclass(frozen=True)
class Plan:
    """How long and how often: `--quick` checks the bench works, the default measures."""

    warmup_seconds: float
    seconds: float
    runs: int
    scaling_runs: int
    sizes: Sizes
    relay_events: int
    relay_runs: int
    rebuild_runs: int
    query_samples: int
    e2e_messages: int

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(1, 3, 1, 1, Sizes(20, 3, 200, 0.2, 10, 10), 5_000, 1, 1, 50, 300)
        return cls(3, 10, 3, 2, Sizes(), 30_000, 3, 1, 300, 2_000)


@dataclass
class Series:
    """A scenario's measured wrk runs: caretrail's, the peer's taken in turn with them, and
    after each of caretrail's the seconds until audit and notify had consumed its facts."""

    ours: list[Run] = field(default_factory=list)
    peer: list[Run] = field(default_factory=list)
    lag_seconds: list[float] = field(default_factory=list)


@dataclass
class Bench:
    system: System
    plan: Plan
    seed: int
    trail_size: int
    stem: str = "bench"  # of the result files, and of the flame graphs
    peer_url: str | None = None
    flame_dir: Path | None = None
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: Dataset | None = None
    peer: PeerData | None = None
    bare_flask_rate: float | None = None  # see bare_flask_limit()
    read_rate: float | None = None  # sets the fact-latency pass's rate
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_at_start: float = field(default_factory=lambda: os.getloadavg()[0])
    cluster: KafkaCluster | None = None  # with --kafka-nodes 3: a broker may be killed

    @property
    def urls(self) -> dict[str, str]:
        return {s: self.system.url(s) for s in SERVICES}

    @property
    def bootstrap(self) -> str:
        return str(self.system.bootstrap)

    @functools.cached_property
    def outboxes(self) -> list[Callable[[], int]]:
        """Unpublished rows of the outboxes a read, list or write fills: records' facts and
        notify's (whose events audit consumes in turn)."""
        return [
            OutboxRelay(
                make_engine(self.system.extra_env[f"CARETRAIL_{s}_DATABASE_URL"]), None
            ).pending_count
            for s in ("RECORDS", "NOTIFY")
        ]

    def scenario(self, name: str, body: Callable[[], None]) -> None:
        started = time.monotonic()
        print(f"· {name} …", flush=True)
        try:
            body()
        except Exception as err:  # one failed scenario must not lose the others' figures
            traceback.print_exc()
            self.notes.append(f"**{name} failed**: {type(err).__name__}: {err}")
        print(f"  {name}: {time.monotonic() - started:.0f} s", flush=True)

    # --- HTTP load ----------------------------------------------------------------------

    def measure(self, load: Load, runs: int | None = None) -> list[Run]:
        load.run(self.plan.warmup_seconds, seed=self.seed)
        measured = [
            load.run(self.plan.seconds, seed=self.seed + n) for n in range(runs or self.plan.runs)
        ]
        self._note_failures(load, measured)
        return measured

    def compare(self, kind: str, load: Load, peer: Load | None) -> Series:
        """caretrail's runs and the peer's in turn (ours, theirs, ours, …) so both see the same
        machine state; after each of ours, wait until audit and notify have consumed its facts
        (the peer then runs on a machine that is not still working off caretrail's)."""
        series = Series()
        with ConsumerLag(self.bootstrap, outboxes=self.outboxes) as lag:
            load.run(self.plan.warmup_seconds, seed=self.seed)
            if peer is not None:
                peer.run(self.plan.warmup_seconds, seed=self.seed)
            lag.seconds_until(0, LAG_TIMEOUT_SECONDS)  # no run starts with a backlog
            with self.flame(kind):
                for n in range(self.plan.runs):
                    series.ours.append(load.run(self.plan.seconds, seed=self.seed + n))
                    series.lag_seconds.append(lag.seconds_until(0, LAG_TIMEOUT_SECONDS))
                    if peer is not None:
                        series.peer.append(peer.run(self.plan.seconds, seed=self.seed + n))
        self._note_failures(load, series.ours)
        if peer is not None:
            self._note_failures(peer, series.peer, "peer: ")
        return series

    def _note_failures(self, load: Load, runs: list[Run], who: str = "") -> None:
        failed = sum(r.failed for r in runs)
        if failed:
            self.notes.append(
                f"{who}{load.method} {load.paths[0]}…: {failed} of "
                f"{sum(r.requests for r in runs)} requests failed (non-2xx or socket errors)"
            )

    @contextmanager
    def flame(self, kind: str) -> Iterator[None]:
        """A flame graph of the records web workers for as long as the block, if asked for."""
        if self.flame_dir is None:
            yield
            return
        path = self.flame_dir / f"flame-{self.stem}-{kind}.svg"
        with FlameGraph(self.system.processes["records-web"].pid, path) as graph:
            yield
        self.notes.append(graph.problem or f"flame graph of the {kind} runs: {path.name}")

    def load_peer(self) -> None:
        assert self.peer_url is not None
        started = time.monotonic()
        self.peer = load_peer(self.peer_url, self.plan.sizes, self.seed)
        self.notes.append(
            f"peer {self.peer.software} at {self.peer_url}: loaded {len(self.peer.patients)} "
            f"patients with {len(self.peer.observations)} Observations and a chart of "
            f"{self.plan.sizes.chart_records} in {time.monotonic() - started:.0f} s"
        )

    def compared_rows(
        self, scenario: str, kind: str, series: Series, peer_what: str, peer_target: float
    ) -> None:
        """The rows every compared scenario adds after its own: lag back to 0, the peer's
        figure and caretrail / peer."""
        late = sum(1 for s in series.lag_seconds if s >= LAG_TIMEOUT_SECONDS)
        self.figures.append(
            throughput(
                scenario,
                f"lag back to 0 after the {kind} run",
                "s",
                series.lag_seconds,
                targets=(Target("max", LAG_TARGET_SECONDS, False),),
                note="records and notify outboxes, audit and notify consumer groups"
                + (f"; {late} runs not back to 0 in {LAG_TIMEOUT_SECONDS:.0f} s" if late else ""),
            )
        )
        if self.peer is None or not series.peer:
            return
        self.figures.append(
            http_throughput(scenario, f"peer: {self.peer.software}, {peer_what}", series.peer)
        )
        if any(r.requests == 0 for r in series.peer):
            self.notes.append(f"no caretrail / peer ratio for {kind}: a peer run answered nothing")
            return
        self.figures.append(
            paired_ratio(
                scenario,
                f"caretrail / peer ({peer_what})",
                [r.per_second for r in series.ours],
                [r.per_second for r in series.peer],
                targets=(Target("median", peer_target, True),),
                note="median of each pair of runs' ratio",
            )
        )

    def bare_flask_limit(self) -> float:
        """The limit of the read, list and write runs: bare Flask under the same gunicorn
        config, measured once, after the first of those scenarios to run (with its own row)."""
        if self.bare_flask_rate is None:
            with bare_flask(self.system, WEB_WORKERS) as url:
                runs = self.measure(Load(url, ["/ping"], "none"))
            self.bare_flask_rate = _median([r.per_second for r in runs])
            self.figures.append(
                http_throughput(
                    "limit: bare Flask endpoint", f"throughput at {CONNECTIONS} connections", runs
                )
            )
        return self.bare_flask_rate

    def read_load(self) -> Load:
        assert self.data is not None
        return Load(self.urls["records"], self.data.read_paths(), self.data.tokens["reader"])

    def read_one_record(self) -> None:
        roots = {name: p.pid for name, p in self.system.processes.items()}
        if self.system.broker is not None and self.system.broker.running_pid():
            roots["broker"] = int(self.system.broker.running_pid() or 0)
        peer = self.peer.read_load() if self.peer else None
        with PeakRss(roots) as rss:
            series = self.compare("read", self.read_load(), peer)
        runs = series.ours
        self.read_rate = _median([r.per_second for r in runs])
        limit = self.bare_flask_limit()
        scenario = "read one record (practitioner, under consent)"
        self.figures.append(
            http_throughput(
                scenario,
                f"throughput at {CONNECTIONS} connections",
                runs,
                targets=(Target("ratio", 0.5, True), Target("p99", 50, False)),
                limit=limit,
                limit_name=BARE_FLASK,
                note=f"p50 {_median([r.p50_ms for r in runs]):.1f} ms",
            )
        )
        self.compared_rows(scenario, "read", series, "GET /Observation/{id}", 1.0)
        peaks = rss.peaks
        memory_targets = {"web": 150.0, "worker": 200.0}
        for kind in ("web", "worker", "broker", "master"):
            if kind in peaks:
                target = memory_targets.get(kind)
                self.figures.append(
                    throughput(
                        "memory under the read load",
                        {
                            "web": "peak RSS of one gunicorn worker",
                            "worker": "peak RSS of one service worker",
                            "broker": "peak RSS of the broker (JVM, -Xmx512m)",
                            "master": "peak RSS of one gunicorn master",
                        }[kind],
                        "MB",
                        [peaks[kind]],
                        targets=(Target("median", target, False),) if target else (),
                    )
                )
        self.notes.append(
            "memory by process (MB): "
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(rss.by_process.items()))
        )

    def list_chart(self) -> None:
        assert self.data is not None
        chart = self.data.chart
        ours = Load(
            self.urls["records"], [f"/patients/{chart.id}/records"], self.data.tokens["reader"]
        )
        series = self.compare("list", ours, self.peer.search_load() if self.peer else None)
        scenario = "list a chart of 200 records, consent hides the sensitive ones"
        self.figures.append(
            http_throughput(
                scenario,
                "throughput (first page, 20 records)",
                series.ours,
                targets=(Target("ratio", 0.2, True),),
                limit=self.bare_flask_limit(),
                limit_name=BARE_FLASK,
            )
        )
        self.compared_rows(scenario, "list", series, "GET /Observation?patient=X&_count=20", 1.5)

    def write_record(self) -> None:
        assert self.data is not None
        body = json.dumps(resource(random.Random(self.seed))).encode()
        paths = [f"/patients/{p.id}/records" for p in self.data.reading]
        ours = Load(self.urls["records"], paths, self.data.tokens["author"], "POST", body)
        series = self.compare(
            "write", ours, self.peer.create_load(self.seed) if self.peer else None
        )
        scenario = "write a record (FHIR validation, encryption, event)"
        self.figures.append(
            http_throughput(
                scenario,
                "throughput",
                series.ours,
                targets=(Target("ratio", 0.2, True),),
                limit=self.bare_flask_limit(),
                limit_name=BARE_FLASK,
            )
        )
        self.compared_rows(scenario, "write", series, "POST /Observation", 1.0)

    def scaling(self) -> None:
        for workers in (1, 2, 4):
            self.system.web_workers = workers
            self.system.restart("records-web")
            self.system.wait_until_ready()
            runs = self.measure(self.read_load(), self.plan.scaling_runs)
            self.figures.append(
                http_throughput(
                    "scaling: read one record",
                    f"gunicorn workers = {workers}",
                    runs,
                )
            )
        self.system.web_workers = WEB_WORKERS
        self.system.restart("records-web")
        self.system.wait_until_ready()

    # --- facts in flight ----------------------------------------------------------------

    def fact_latency(self) -> None:
        if not self.read_rate:
            self.notes.append(
                f"no read rate measured: fact latency at {FALLBACK_RATE:.0f} req/s instead of half"
            )
        half = self.read_rate / 2 if self.read_rate else FALLBACK_RATE
        self._fact_travel(half, f"at half the read rate ({half:.0f} req/s)", targets=True)
        self._fact_travel(UNSATURATED_RATE, f"at {UNSATURATED_RATE:.0f} req/s", targets=False)
        size = trail.wire_size(self.seed)
        broker = kafka_tools.end_to_end_latency(self.bootstrap, self.plan.e2e_messages, size)
        self.figures.append(
            Figure(
                "limit: Kafka end-to-end latency",
                f"EndToEndLatency, acks=all, {size} B, 1 partition",
                "ms",
                median=broker.p50_ms,
                low=broker.p50_ms,
                high=broker.p99_ms,
                runs=1,
                p99=broker.p99_ms,
                note=f"{self.plan.e2e_messages} messages, mean {broker.mean_ms:.2f} ms",
            )
        )

    def _fact_travel(self, rate: float, title: str, targets: bool) -> None:
        assert self.data is not None
        # Each pass starts once audit and notify have caught up with what came before.
        drained = drain(self.bootstrap, self.outboxes)
        self.notes.append(
            f"before the fact-latency probes at {rate:.0f} req/s, audit and notify took "
            f"{drained:.0f} s to consume the backlog"
        )
        travel = facts.fact_travel(self.urls, self.data, rate=rate)
        note = (
            f"{len(self.data.probes)} probes; background reads asked at {rate:.0f} req/s, "
            f"answered {travel.background_per_second:.0f} req/s"
        )
        if travel.lost:
            note += f", {travel.lost} not seen within 10 s"
        if travel.skipped:
            note += f", {travel.skipped} not started within the 2 min budget"
        for name, samples, bound in (
            ("read answered → audit entry queryable", travel.audit_ms, 250),
            ("read answered → notification in the inbox", travel.inbox_ms, 500),
        ):
            if not samples:
                self.notes.append(f"fact latency {title}: no {name} within 10 s")
                continue
            self.figures.append(
                latency(
                    f"fact latency {title}",
                    name,
                    samples,
                    runs=1,
                    # The targets hold at half the read rate; the lower rate shows
                    # the pipeline's own delay on a machine that is not saturated.
                    targets=(Target("p99", bound, False),) if targets else (),
                    note=note,
                )
            )

    def revocation(self) -> None:
        assert self.data is not None
        drain(self.bootstrap, self.outboxes)
        samples = facts.revocation_to_refusal(self.urls, self.data)
        self.figures.append(
            latency(
                "revocation → first denied read",
                f"over {len(samples)} revocations (4 at a time)",
                samples,
                runs=1,
                targets=(Target("p99", 1000, False),),
            )
        )

    def broker_recovery(self) -> None:
        if self.cluster is None:
            self.notes.append("recovery: a broker kill needs a cluster (--kafka-nodes 3)")
            return
        db_urls = {
            s: self.system.extra_env[f"CARETRAIL_{s.upper()}_DATABASE_URL"] for s in SERVICES
        }
        got = recovery.after_broker_kill(
            self.cluster, self.urls, db_urls, Settings.from_env("cli"), rate=RECOVERY_RATE
        )
        r = got.reconciliation
        note = (
            f"mixed load at {RECOVERY_RATE:.0f} req/s; {r.answered} requests answered, facts "
            f"{r.found}/{r.expected} found, {r.duplicated} duplicated, {r.lost} lost"
            + (f"; {'; '.join(r.problems())}" if r.problems() else "")
        )
        scenario = "recovery: SIGKILL the leader broker of 3"
        for name, seconds in (
            ("kill → facts flow again on its partitions", got.facts_flow_seconds),
            ("kill → outboxes empty, no group lagging", got.lag_zero_seconds),
            ("restart → every replica in sync", got.in_sync_seconds),
        ):
            self.figures.append(
                Figure(scenario, name, "s", seconds, seconds, seconds, runs=1, note=note)
            )

    # --- the outbox and the trail -------------------------------------------------------

    def stop_workers(self) -> None:
        """The relay and rebuild figures are taken with no consumer competing for the cores
        (and a rebuild must run with the audit worker stopped)."""
        for service in SERVICES:
            self.system.kill(f"{service}-worker", signal.SIGTERM)

    def outbox_relay(self) -> None:
        assert self.data is not None
        engine = make_engine(self.system.extra_env["CARETRAIL_RECORDS_DATABASE_URL"])
        producer = make_producer(self.bootstrap)
        patients = [p.id for p in self.data.reading]
        rates, size = [], trail.wire_size(self.seed)
        for n in range(self.plan.relay_runs):
            trail.empty_outbox(engine)
            trail.fill_outbox(engine, patients, self.plan.relay_events, self.seed + n)
            published, rate = trail.relay_throughput(engine, producer)
            if published != self.plan.relay_events:
                self.notes.append(
                    f"relay run {n}: published {published}, not {self.plan.relay_events}"
                )
            rates.append(rate)
        client = [
            trail.client_throughput(producer, self.plan.relay_events, self.seed + n)
            for n in range(self.plan.relay_runs)
        ]
        producer.close()
        limits = [
            kafka_tools.producer_throughput(self.bootstrap, self.plan.relay_events, size)
            for _ in range(self.plan.relay_runs)
        ]
        # The relay's ceiling in Python is the client alone; the ratio is what the database
        # work of the relay costs.
        self.figures.append(
            throughput(
                "outbox relay",
                f"events published ({self.plan.relay_events:,} per run, batches of 500)",
                "events/s",
                rates,
                targets=(Target("ratio", 0.9, True),),
                limit=_median(client),
                limit_name="kafka-python alone, same facts encoded beforehand, no database",
            )
        )
        self.figures.append(
            throughput(
                "limit: Kafka's ProducerPerformance",
                f"{size} B, acks=all, idempotent (the JVM client: beyond Python's reach)",
                "events/s",
                limits,
            )
        )

    def audit_rebuild(self) -> None:
        written = trail.grow_trail(self.bootstrap, self.trail_size)
        counts = trail.messages_by_topic(self.bootstrap)
        total = sum(counts.values())
        engine = make_engine(self.system.extra_env["CARETRAIL_AUDIT_DATABASE_URL"])
        results = {
            processes: [
                trail.rebuild_trail(engine, self.bootstrap, processes)
                for _ in range(self.plan.rebuild_runs)
            ]
            for processes in (1, 2)
        }
        # The first replay starts from the live trail, which the stopped worker may not have
        # finished: only replays of the same topics must agree.
        heads = {r.heads_after for runs in results.values() for r in runs}
        if len(heads) > 1:
            self.notes.append("two rebuilds of the same topics ended on different chain heads")
        limits = [
            kafka_tools.consumer_throughput(self.bootstrap, counts)
            for _ in range(self.plan.rebuild_runs)
        ]
        for processes, runs in results.items():
            self.figures.append(
                throughput(
                    f"audit rebuild from offset 0 ({total:,} events)",
                    f"events replayed ({processes} process{'es' if processes > 1 else ''}, "
                    "sharing the 30 partitions)",
                    "events/s",
                    [r.events_per_second for r in runs],
                    # The target is for 2 processes; 1 shows what the second adds.
                    targets=(Target("median", 20_000, True),) if processes == 2 else (),
                    limit=_median(limits),
                    limit_name="ConsumerPerformance, same topics",
                    note=f"{written:,} synthetic facts added to the bench's own",
                )
            )

    def audit_queries(self) -> None:
        assert self.data is not None
        url, token = self.urls["audit"], self.data.tokens["compliance"]
        disclosures: list[tuple[str, dict[str, str]]] = [
            (f"/audit/patients/{p.id}/disclosures", {}) for p in self.data.reading
        ]
        searches = trail.actor_period_queries(self.started)
        size = sum(trail.messages_by_topic(self.bootstrap).values())
        for name, paths in (
            ("a patient's disclosures (first page)", disclosures),
            ("search by actor and period (first page)", searches),
        ):
            samples = trail.query_latencies(url, token, paths, self.plan.query_samples, self.seed)
            self.figures.append(
                latency(
                    f"audit query over {size:,} entries",
                    name,
                    samples,
                    runs=1,
                    targets=(Target("p99", 20, False),),
                    note=f"{len(samples)} sequential requests",
                )
            )


class bare_flask:
    """bench/bare.py under deploy/gunicorn.conf.py on a free port, for as long as the block."""

    def __init__(self, system: System, workers: int) -> None:
        self._env = {**system.env, "CARETRAIL_WEB_WORKERS": str(workers)}
        self._port = free_port()

    def __enter__(self) -> str:
        self._process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "-c",
                str(ROOT / "deploy" / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{self._port}",
                "bench.bare:create_app()",
            ],
            env=self._env,
            cwd=ROOT,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{self._port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/ping", timeout=1).ok:
                    return url
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("the bare Flask app did not start")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        os.killpg(self._process.pid, signal.SIGTERM)
        self._process.wait(20)


def http_throughput(scenario: str, name: str, runs: list[Run], **extra: Any) -> Figure:
    """A req/s figure over wrk runs, with each run's p99 latency."""
    return throughput(
        scenario,
        name,
        "req/s",
        [r.per_second for r in runs],
        [r.p99_ms for r in runs],
        **extra,
    )


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def _header(bench: Bench, db: str, quick: bool, seconds: float) -> str:
    plan = bench.plan
    cpu = platform.processor() or platform.machine()
    return "\n".join(
        [
            f"# caretrail bench — {bench.started:%Y-%m-%d %H:%M} UTC — {db}"
            + (" — QUICK (not a measurement)" if quick else ""),
            "",
            f"**Machine: {os.cpu_count()} cores ({cpu}) shared by everything**: the load "
            "generator (wrk, 2 threads), the Kafka broker, 4 gunicorn apps and 4 workers "
            f"run on the same cores. Web apps: gunicorn gthread, {WEB_WORKERS} workers × 4 "
            f"threads. HTTP scenarios: {plan.warmup_seconds:.0f} s warm-up, then "
            f"{plan.runs} × {plan.seconds:.0f} s at {CONNECTIONS} connections; the median is "
            "over runs, p99 is the median of the runs' p99 latencies, min–max is the spread "
            "of the runs. Latency scenarios: median = p50 of every sample, min–max = range "
            f"of the samples. Seed {bench.seed}; the whole bench took {seconds / 60:.1f} min; "
            f"load average at the start {bench.load_at_start:.2f} (other work on the machine).",
            *(
                [
                    "",
                    f"**Peer: {bench.peer.software}** at {bench.peer.base_url}, loaded with the "
                    "same data through FHIR REST; its runs alternate with caretrail's (ours, "
                    "the peer's, ours, …) under the same wrk settings.",
                ]
                if bench.peer
                else []
            ),
        ]
    )


def main(args: argparse.Namespace) -> int:
    try:
        require_wrk()
    except WrkMissing as err:
        print(err)
        return 2
    unknown = set(args.only or ()) - set(SCENARIOS)
    if unknown:
        print(
            f"no such scenario: {', '.join(sorted(unknown))}; choose among {', '.join(SCENARIOS)}"
        )
        return 2
    plan = Plan.of(args.quick)
    trail_size = 1_000_000 if args.full else (20_000 if args.quick else args.trail_size)
    home = Path(tempfile.mkdtemp(prefix="caretrail-bench-"))
    home.chmod(0o755)  # the PostgreSQL cluster under it runs as the postgres user
    started = datetime.now(UTC)
    stem = f"{started:%Y-%m-%d}-{args.db}" + ("-quick" if args.quick else "")
    stem += ("-full" if args.full else "") + ("-peer" if args.peer_url else "")
    stem += "-" + "-".join(args.only) if args.only else ""
    out = Path(args.out)
    cluster = KafkaCluster(home / "kafka") if args.kafka_nodes > 1 else None
    bench = Bench(
        System(home, db=args.db, web_workers=WEB_WORKERS),
        plan,
        args.seed,
        trail_size,
        stem=stem,
        peer_url=args.peer_url,
        flame_dir=None if args.flame is None else Path(args.flame or args.out),
        started=started,
        cluster=cluster,
    )
    began = time.monotonic()
    try:
        print(f"starting the system ({args.db}) in {home} …", flush=True)
        if cluster is not None:
            cluster.start()
            bench.system.bootstrap = cluster.bootstrap
        bench.system.start()
        bench.scenario("load data", lambda: _load(bench))
        if args.peer_url:
            bench.scenario("load the peer", bench.load_peer)
        if bench.data is not None:
            for name, body in steps_of(bench, args.only or SCENARIOS):
                bench.scenario(name, body)
    finally:
        bench.system.stop()
        if cluster is not None:
            cluster.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    seconds = time.monotonic() - began
    header = _header(bench, args.db, args.quick, seconds)
    notes = "\n".join(f"- {n}" for n in bench.notes)
    page, data = report.write(
        out,
        stem,
        bench.figures,
        header,
        {
            "db": args.db,
            "quick": args.quick,
            "seed": args.seed,
            "trail_size": trail_size,
            "cores": os.cpu_count(),
            "web_workers": WEB_WORKERS,
            "kafka_nodes": args.kafka_nodes,
            "seconds": seconds,
            "scenarios": args.only or list(SCENARIOS),
            "peer": {"url": bench.peer.base_url, "software": bench.peer.software}
            if bench.peer
            else None,
            "notes": bench.notes,
        },
    )
    if notes:
        with page.open("a") as out_page:
            out_page.write(f"\nNotes:\n\n{notes}\n")
    print(page.read_text())
    print(f"wrote {page} and {data}")
    return 1 if any("failed" in n for n in bench.notes) else 0


# `--only` picks among these, run in this order; the workers are stopped before the relay.
SCENARIOS = (
    "read",
    "list",
    "write",
    "facts",
    "revocation",
    "scaling",
    "relay",
    "rebuild",
    "queries",
    "recovery",
)


def steps_of(bench: Bench, only: Iterable[str]) -> list[tuple[str, Callable[[], None]]]:
    """The steps of the scenarios named, in the bench's order."""
    steps: list[tuple[tuple[str, ...], str, Callable[[], None]]] = [
        (("read",), "read one record + memory + bare Flask", bench.read_one_record),
        (("list",), "list a chart", bench.list_chart),
        (("write",), "write a record", bench.write_record),
        (("facts",), "fact latency", bench.fact_latency),
        (("revocation",), "revocation", bench.revocation),
        (("scaling",), "scaling", bench.scaling),
        # The relay runs with no consumer competing for the cores, a rebuild with the audit
        # worker stopped.
        (("relay", "rebuild"), "stop the workers", bench.stop_workers),
        (("relay",), "outbox relay", bench.outbox_relay),
        (("rebuild",), "audit rebuild", bench.audit_rebuild),
        (("queries",), "audit queries", bench.audit_queries),
        # Last: it kills a broker (the cluster is whole again when it ends).
        (("recovery",), "recovery after a broker kill", bench.broker_recovery),
    ]
    wanted = set(only)
    return [(name, body) for keys, name, body in steps if wanted & set(keys)]


def _load(bench: Bench) -> None:
    started = time.monotonic()
    bench.data = load(bench.urls, Settings.from_env("cli"), bench.plan.sizes, bench.seed)
    bench.notes.append(
        f"loaded {len(bench.data.read_paths())} readable records over "
        f"{len(bench.data.reading)} patients, a chart of {len(bench.data.chart.records)}, "
        f"{len(bench.data.probes)} probe and {len(bench.data.revocations)} revocation patients "
        f"in {time.monotonic() - started:.0f} s"
    )
