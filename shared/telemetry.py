"""OpenTelemetry tracing and JSON logs.

The W3C `traceparent` of the request is stored with each outbox row, travels as the
CloudEvents `traceparent` extension (`ce_traceparent` header), and becomes the parent of the
consumer's span, so one trace runs from an HTTP request to every projection it caused.
The kafka-python instrumentation wraps `send` and `__next__` only, not `poll()`, so the
consumer loop extracts the context itself (`context_from_traceparent`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pythonjsonlogger.json import JsonFormatter

_propagator = TraceContextTextMapPropagator()


class JsonLinesFileExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object a line (for local runs and tests)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self._path, "a", encoding="utf-8") as f:
            for span in spans:
                ctx = span.get_span_context()
                parent = span.parent
                f.write(
                    json.dumps(
                        {
                            "name": span.name,
                            "trace_id": format(ctx.trace_id, "032x") if ctx else None,
                            "span_id": format(ctx.span_id, "016x") if ctx else None,
                            "parent_id": format(parent.span_id, "016x") if parent else None,
                            "service": span.resource.attributes.get("service.name"),
                            # ns since the epoch: how long a fact took between processes
                            "start_ns": span.start_time,
                            "end_ns": span.end_time,
                            "attributes": dict(span.attributes or {}),
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS


def setup_tracing(service: str) -> TracerProvider:
    """Install the tracer provider of this process (once; later calls return it)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = tracer_provider(service, os.environ)
    trace.set_tracer_provider(provider)
    return provider


def tracer_provider(service: str, environ: Mapping[str, str]) -> TracerProvider:
    """Spans go to OTLP and/or a JSON-lines file, as configured; with neither, none is recorded.

    Unrecorded spans still get ids, so logs, traceparents and audit entries still carry the
    trace id. Recording and tracing statements for nobody took a third of a chart read's time
    (`python -m bench.profile_read --plain`: 159 reads/s in one thread, 233 without).
    """
    otlp = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    trace_file = environ.get("CARETRAIL_TRACE_FILE")
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"caretrail-{service}"}),
        sampler=None if exporting(environ) else ALWAYS_OFF,  # None: OTEL_TRACES_SAMPLER decides
    )
    if otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if trace_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesFileExporter(trace_file)))
    return provider


def exporting(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("CARETRAIL_TRACE_FILE"))


def instrument_flask(app: Any) -> None:
    """Give every request a span: a recorded one when spans are exported, else ids only.

    Without an exporter, the instrumentation's per-request work (attributes, URL rebuilding,
    metrics) served nobody and took a tenth of a chart read; a bare non-recording span in
    the request's context keeps the trace ids that logs, facts and audit entries carry, and
    continues the caller's trace when it sends a `traceparent`.
    """
    if exporting(os.environ):
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app, excluded_urls="healthz,readyz,metrics")
        return
    from flask import g, request

    tracer = trace.get_tracer("caretrail.http")

    def start_span() -> None:
        parent = _propagator.extract(request.headers)
        span = tracer.start_span(request.method, context=parent, kind=trace.SpanKind.SERVER)
        g.trace_token = otel_context.attach(trace.set_span_in_context(span, parent))

    def end_span(_error: BaseException | None) -> None:
        token = g.pop("trace_token", None)
        if token is not None:
            otel_context.detach(token)

    app.before_request_funcs.setdefault(None, []).insert(0, start_span)
    app.teardown_request(end_span)


def instrument_engine(engine: Any) -> None:
    """Trace the statements of `engine` (the process's one engine; tests build more, untraced).

    Not when no span is exported: unlike the request's span, whose trace id goes into logs and
    facts, a statement's span would serve nobody.
    """
    if not exporting(os.environ):
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(engine=engine)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, if any."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> otel_context.Context:
    return _propagator.extract({"traceparent": traceparent} if traceparent else {})


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id part of a traceparent (`00-<trace id>-<span id>-<flags>`)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 else None


class _TraceIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else None
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else None
        return True


class QuietRepeats(logging.Filter):
    """One line per `window_seconds` for each message kafka-python repeats.

    While a broker is down, kafka-python logs some warnings in a tight loop: a worker of the
    fault suite wrote "Marking the coordinator dead ... Node Disconnected" 6,764 times in 35 s.
    One line each window still shows when it began and how long it lasted."""

    _MOST_REMEMBERED = 1000  # messages embed ids and addresses: forget them all past this

    def __init__(
        self, window_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._window = window_seconds
        self._clock = clock
        self._last_shown: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        key, now = (record.name, record.getMessage()), self._clock()
        shown = self._last_shown.get(key)
        if shown is not None and now - shown < self._window:
            return False
        if len(self._last_shown) >= self._MOST_REMEMBERED:
            self._last_shown.clear()
        self._last_shown[key] = now
        return True


def setup_logging(service: str, level: str | None = None) -> None:
    """JSON lines on stderr with the service name and the current trace and span ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(QuietRepeats())
    handler.addFilter(_TraceIds())
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s",
            static_fields={"service": service},
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("CARETRAIL_LOG_LEVEL", "INFO"))
    # kafka-python is chatty at INFO about every (re)connection.
    logging.getLogger("kafka").setLevel(logging.WARNING)
