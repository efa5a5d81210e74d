"""The broker's own figures, from the tools shipped in Kafka's jars (var/kafka/libs):
end-to-end latency, producer and consumer throughput."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

from caretrail.kafka_server import DEFAULT_LIBS, LOG4J_CONFIG
from shared.broker import ensure_topics

BENCH_TOPIC = "bench.perf.v1"
_STATS_ROW = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:]+, ")


def _java(main_class: str, *args: str, libs: Path = DEFAULT_LIBS) -> str:
    command = [
        shutil.which("java") or "java",
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp",
        f"{libs}/*",
        f"org.apache.kafka.tools.{main_class}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{main_class} failed: {done.stderr[-1500:]}")
    return done.stdout


@dataclass(frozen=True)
class EndToEnd:
    p50_ms: float
    p99_ms: float
    mean_ms: float


def end_to_end_latency(bootstrap: str, messages: int, size: int) -> EndToEnd:
    """`EndToEndLatency`: produce one message (acks=all), wait until it is consumed, repeat."""
    topic = f"bench.latency.{uuid4().hex[:8]}"
    ensure_topics(bootstrap, (topic,), partitions=1)
    out = _java("EndToEndLatency", bootstrap, topic, str(messages), "all", str(size))
    mean = float(re.search(r"Avg latency: ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    percentiles = re.search(r"Percentiles: 50th = ([\d.]+), 99th = ([\d.]+)", out)
    if percentiles is None:
        raise RuntimeError(f"EndToEndLatency said: {out[-500:]}")
    return EndToEnd(float(percentiles.group(1)), float(percentiles.group(2)), mean)


def producer_throughput(bootstrap: str, records: int, size: int) -> float:
    """`ProducerPerformance` with the relay's producer settings: records/s."""
    ensure_topics(bootstrap, (BENCH_TOPIC,))
    out = _java(
        "ProducerPerformance",
        "--topic",
        BENCH_TOPIC,
        "--num-records",
        str(records),
        "--record-size",
        str(size),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={bootstrap}",
        "acks=all",
        "enable.idempotence=true",
        "linger.ms=2",
    )
    final = out.strip().splitlines()[-1]
    match = re.search(r"records sent, ([\d.]+) records/sec", final)
    if match is None:
        raise RuntimeError(f"ProducerPerformance said: {out[-500:]}")
    return float(match.group(1))


def consumer_throughput(bootstrap: str, messages_by_topic: dict[str, int]) -> float:
    """`ConsumerPerformance` over each topic from its beginning: messages/s over them all
    (fetch time, the tool's figure without the group join)."""
    total_messages = total_ms = 0.0
    for topic, count in messages_by_topic.items():
        if count == 0:
            continue
        out = _java(
            "ConsumerPerformance",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--messages",
            str(count),
            "--group",
            f"bench-perf-{uuid4().hex[:8]}",
            "--timeout",
            "30000",
        )
        # The tool's log lines share stdout with its figures: find the header and the row.
        lines = out.strip().splitlines()
        header_line = next(line for line in lines if line.startswith("start.time"))
        row_line = [line for line in lines if _STATS_ROW.match(line)][-1]
        header = [h.strip() for h in header_line.split(",")]
        values = [v.strip() for v in row_line.split(",")]
        row = dict(zip(header, values, strict=False))
        total_messages += float(row["data.consumed.in.nMsg"])
        total_ms += float(row["fetch.time.ms"])
    return total_messages / (total_ms / 1000) if total_ms else 0.0
