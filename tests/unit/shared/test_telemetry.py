"""Spans are recorded only where something receives them; trace ids exist either way. The
log keeps one line per window of a message kafka-python repeats in a loop."""

from __future__ import annotations

import json
import logging

from shared.telemetry import QuietRepeats, current_traceparent, trace_id_of, tracer_provider


def traceparent_inside_a_span(environ: dict[str, str]) -> tuple[bool, str | None]:
    tracer = tracer_provider("records", environ).get_tracer("test")
    with tracer.start_as_current_span("GET /patients/p/records/r") as span:
        return span.is_recording(), current_traceparent()


def test_with_no_exporter_spans_are_not_recorded_but_carry_a_trace_id():
    recording, traceparent = traceparent_inside_a_span({})

    assert not recording
    assert traceparent is not None and not int(traceparent.split("-")[3], 16) & 1
    assert trace_id_of(traceparent) not in (None, "0" * 32)


def test_with_a_trace_file_spans_are_recorded(tmp_path):
    recording, traceparent = traceparent_inside_a_span(
        {"CARETRAIL_TRACE_FILE": str(tmp_path / "traces.jsonl")}
    )

    assert recording
    assert traceparent is not None and int(traceparent.split("-")[3], 16) & 1  # sampled
    (written,) = [json.loads(line) for line in (tmp_path / "traces.jsonl").read_text().splitlines()]
    assert written["name"] == "GET /patients/p/records/r"
    assert 0 < written["start_ns"] <= written["end_ns"]


def kafka_warning(message: str, logger: str = "kafka.coordinator") -> logging.LogRecord:
    return logging.LogRecord(logger, logging.WARNING, __file__, 1, message, None, None)


def test_a_message_kafka_python_repeats_in_a_tight_loop_is_shown_once_per_window():
    now = [0.0]
    quiet = QuietRepeats(window_seconds=5, clock=lambda: now[0])
    dead = "Marking the coordinator dead (node coordinator-2) for group notify: Node Disconnected."
    shown = []
    for tick in range(1000):  # 10 s of the loop, a line every 10 ms
        now[0] = tick / 100
        shown.append(quiet.filter(kafka_warning(dead)))
    assert shown.count(True) == 2  # at 0 s and at 5 s
    assert quiet.filter(kafka_warning("Fetch to node 3 failed"))  # another message: shown
    assert quiet.filter(kafka_warning(dead, logger="shared.inbox"))  # our own lines: all shown
    assert quiet.filter(kafka_warning(dead, logger="shared.inbox"))
