"""Spans are recorded only where something receives them; trace ids exist either way."""

from __future__ import annotations

import json

from shared.telemetry import current_traceparent, trace_id_of, tracer_provider


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
