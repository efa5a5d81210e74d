"""The trend use case: one code's series from the Observations the reader may see."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.records.chart import Chart, RecordView
from services.records.domain import Reader
from services.records.trends import Code, Measured, Trend, trend


def chart_trend(
    chart: Chart,
    reader: Reader,
    patient: str,
    code: Code,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Trend:
    """The trend of `code`; its access fact names the records that gave a value."""

    def series(views: list[RecordView]) -> tuple[Trend, Sequence[str]]:
        measured = (Measured(v.id, v.source, v.resource) for v in views)
        found = trend(code, measured, since=since, until=until)
        return found, found.record_ids

    return chart.derive(reader, patient, ("Observation",), series)
