"""A trend as a picture: an SVG line chart drawn by matplotlib (its SVG backend, no display),
readable on its own: title, axes with dates and the unit, EHR and PHR values told apart.

The SVG names the code and values, so it is clinical content: it is answered only to a reader
who may see the records it draws, like the JSON of the same trend.
"""

from __future__ import annotations

import io
import threading

from services.records.trends import Trend

_SOURCES = {"EHR": ("o", "tab:blue", "EHR (provider)"), "PHR": ("s", "tab:orange", "PHR (patient)")}
# pyplot keeps global state; the object-oriented API below does not, but font and text caches
# are shared, so one chart is drawn at a time per process.
_DRAWING = threading.Lock()


def svg(trend: Trend) -> bytes:
    """The trend as an SVG document."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure

    # Text stays text (not glyph paths): searchable, and read aloud by screen readers.
    with _DRAWING, rc_context({"svg.fonttype": "none"}):
        figure = Figure(figsize=(8, 4), layout="constrained")
        FigureCanvasSVG(figure)
        axes = figure.add_subplot()
        points = [p for p in trend.points if p.normalised]
        axes.plot(
            date2num([p.time for p in points]), [p.value for p in points], color="0.6", zorder=1
        )
        for source, (marker, color, label) in _SOURCES.items():
            mine = [p for p in points if p.source == source]
            if mine:
                times, values = date2num([p.time for p in mine]), [p.value for p in mine]
                axes.scatter(times, values, marker=marker, color=color, label=label, zorder=2)
        axes.xaxis_date()
        locator = AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axes.set_ylabel(trend.unit or "")
        axes.set_title(_title(trend))
        axes.grid(True, alpha=0.3)
        if points:
            axes.legend(loc="best")
        else:
            axes.text(0.5, 0.5, "no values", ha="center", va="center", transform=axes.transAxes)
        out = io.BytesIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def _title(trend: Trend) -> str:
    name = trend.code.display or trend.code.code
    if trend.summary is None:
        return name
    s = trend.summary
    return f"{name}: last {s.last:g} {trend.unit}, min {s.min:g}, max {s.max:g}, {s.direction}"
