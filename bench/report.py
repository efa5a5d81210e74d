"""Figures of a bench run and the table (markdown) and JSON they are written as. Pure: no I/O
but `write`."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    """What a figure should reach: `stat` at least or at most `value`.

    `stat` is "median", "p99", "max" (every run: the top of the range) or "ratio" (the
    median over the limit measured beside it, e.g. ≥ 0.5 × bare Flask).
    """

    stat: str
    value: float
    at_least: bool

    def met(self, figure: Figure) -> bool | None:
        measured = {
            "median": figure.median,
            "p99": figure.p99,
            "max": figure.high,
            "ratio": figure.ratio,
        }[self.stat]
        if measured is None:
            return None
        return measured >= self.value if self.at_least else measured <= self.value

    def text(self, unit: str) -> str:
        sign = "≥" if self.at_least else "≤"
        if self.stat == "ratio":
            return f"{sign} {_number(self.value)} × limit"
        prefix = {"p99": "p99 ", "max": "each run "}.get(self.stat, "")
        return f"{prefix}{sign} {_number(self.value)} {unit}"


@dataclass(frozen=True)
class Figure:
    """One row of the table.

    For a throughput figure `median` is the median over runs, `p99` the median over runs of
    each run's p99 latency (in `p99_unit`), `low`/`high` the spread of the runs. For a latency
    figure, `median` and `p99` are percentiles of every sample and `low`/`high` their range.
    """

    scenario: str
    name: str
    unit: str
    median: float
    low: float
    high: float
    runs: int
    p99: float | None = None
    p99_unit: str = "ms"
    targets: tuple[Target, ...] = ()
    limit: float | None = None
    limit_name: str = ""
    note: str = ""
    samples: list[float] = field(default_factory=list, compare=False)

    @property
    def ratio(self) -> float | None:
        return self.median / self.limit if self.limit else None

    @property
    def verdict(self) -> str:
        results = [t.met(self) for t in self.targets]
        if not results:
            return "—"
        if any(r is None for r in results):
            return "?"
        return "met" if all(results) else "**missed**"


def throughput(
    scenario: str,
    name: str,
    unit: str,
    values: list[float],
    p99s: list[float] | None = None,
    **extra: Any,
) -> Figure:
    """A figure from one value per run (e.g. req/s), with each run's p99 latency if any."""
    return Figure(
        scenario,
        name,
        unit,
        median=statistics.median(values),
        low=min(values),
        high=max(values),
        runs=len(values),
        p99=statistics.median(p99s) if p99s else None,
        samples=list(values),
        **extra,
    )


def latency(scenario: str, name: str, samples_ms: list[float], runs: int, **extra: Any) -> Figure:
    """A figure from latency samples in ms: p50 as the median, p99, and the range."""
    return Figure(
        scenario,
        name,
        "ms",
        median=percentile(samples_ms, 50),
        low=min(samples_ms),
        high=max(samples_ms),
        runs=runs,
        p99=percentile(samples_ms, 99),
        samples=[],
        **extra,
    )


def paired_ratio(
    scenario: str, name: str, ours: list[float], theirs: list[float], **extra: Any
) -> Figure:
    """caretrail ÷ a peer over runs taken in turn (ours, theirs, ours, …): `median` is the
    median of each pair's ratio, `low`/`high` their range, so a pair shares one machine state."""
    if not ours or len(ours) != len(theirs) or min(theirs) <= 0:
        raise ValueError(f"no ratio of {ours} runs of ours to the peer's {theirs}")
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    return throughput(scenario, name, "×", ratios, **extra)


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile (no interpolation: a p99 is a sample that happened)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(figures: list[Figure], header: str) -> str:
    """The markdown page of a run: a header paragraph, then one row per figure."""
    lines = [
        header,
        "",
        "| scenario | figure | median | p99 | min–max (runs) | target | verdict "
        "| limit measured beside | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        p99 = f"{_number(f.p99)} {f.p99_unit}" if f.p99 is not None else "—"
        p99_unit = f.p99_unit if f.p99 is not None else ""
        targets = ", ".join(t.text(p99_unit if t.stat == "p99" else f.unit) for t in f.targets)
        limit = f"{f.limit_name}: {_number(f.limit)} {f.unit}" if f.limit is not None else "—"
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "—"
        name = f"{f.name} ({f.note})" if f.note else f.name
        lines.append(
            f"| {f.scenario} | {name} | {_number(f.median)} {f.unit} | {p99} "
            f"| {_number(f.low)}–{_number(f.high)} ({f.runs}) | {targets or '—'} "
            f"| {f.verdict} | {limit} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def as_json(figures: list[Figure], context: dict[str, Any]) -> str:
    rows = [{**asdict(f), "ratio": f.ratio, "verdict": f.verdict} for f in figures]
    return json.dumps({"context": context, "figures": rows}, indent=2, default=str) + "\n"


def write(
    directory: Path, stem: str, figures: list[Figure], header: str, context: dict[str, Any]
) -> tuple[Path, Path]:
    """Write `<stem>.md` and `<stem>.json` in `directory`; answer their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    page, data = directory / f"{stem}.md", directory / f"{stem}.json"
    page.write_text(table(figures, header))
    data.write_text(as_json(figures, context))
    return page, data
