"""Trends: the series of one code's values across the chart's Observations, EHR and PHR alike,
in one unit, with its minimum, maximum, last value and direction.

Pure, but for unit conversion (`services.records.units`, UCUM). A code matches an
Observation's own code or one of its components' (a blood-pressure panel holds systolic and
diastolic as components); a symptom is a PHR Observation like any other, its 0-10 severity a
valueInteger or a valueQuantity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from statistics import fmean
from typing import Any

from services.records.units import convert
from shared.errors import InvalidInput

UCUM = "http://unitsofmeasure.org"
SCORE = "{score}"  # UCUM's way to write a dimensionless count with a name
RISING, FALLING, STEADY = "rising", "falling", "steady"
# Halves whose means differ by less than this share of the series' magnitude are steady.
STEADY_SHARE = 0.02
_COUNTED = {"final", "amended", "corrected", "preliminary"}
_TIME_ELEMENTS = ("effectiveDateTime", "effectiveInstant", "effectivePeriod", "issued")


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str | None = None

    @property
    def token(self) -> str:
        return f"{self.system}|{self.code}"


def code_of(token: str) -> Code:
    """A `system|code` query parameter as a code, or `InvalidInput`."""
    system, bar, code = token.partition("|")
    if not bar or not system or not code or "|" in code:
        raise InvalidInput("code must be a FHIR token with its system: system|code")
    return Code(system, code)


@dataclass(frozen=True)
class Measured:
    """An Observation of the chart: its record id, who wrote it, its FHIR resource."""

    record_id: str
    source: str  # "ehr" | "phr"
    resource: Mapping[str, Any]


@dataclass(frozen=True)
class Point:
    time: datetime
    value: float
    unit: str
    source: str  # "EHR" | "PHR"
    record_id: str
    normalised: bool = True


@dataclass(frozen=True)
class Summary:
    min: float
    max: float
    last: float
    direction: str


@dataclass(frozen=True)
class Trend:
    code: Code
    unit: str | None
    points: list[Point]
    summary: Summary | None

    @property
    def record_ids(self) -> list[str]:
        return list(dict.fromkeys(p.record_id for p in self.points))


def trend(
    code: Code,
    observations: Iterable[Measured],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Trend:
    """The series of `code` between `since` and `until` (inclusive), oldest first, in the unit
    of its newest value; values UCUM cannot convert to it stay in their own unit, marked, and
    out of the summary."""
    display: str | None = None
    points: list[Point] = []
    for measured in observations:
        for found_display, point in _points(code, measured):
            if (since is None or point.time >= since) and (until is None or point.time <= until):
                points.append(point)
                display = display or found_display
    points.sort(key=lambda p: p.time)
    unit = points[-1].unit if points else None
    if unit is not None:
        points = [_in_unit(p, unit) for p in points]
    return Trend(replace(code, display=display), unit, points, _summary(points))


def _points(code: Code, measured: Measured) -> Iterator[tuple[str | None, Point]]:
    resource = measured.resource
    if resource.get("resourceType") != "Observation" or resource.get("status") not in _COUNTED:
        return
    time = _time(resource)
    if time is None:
        return
    for element in (resource, *resource.get("component", [])):
        display = _matching(code, element.get("code"))
        value = _value(element)
        if display is not False and value is not None:
            point = Point(time, value[0], value[1], measured.source.upper(), measured.record_id)
            yield (display if isinstance(display, str) else None), point


def _matching(code: Code, concept: Any) -> str | bool | None:
    """The display of the coding that is `code` (None if it has none), False if none is."""
    for coding in concept.get("coding", []) if isinstance(concept, Mapping) else []:
        if coding.get("system") == code.system and coding.get("code") == code.code:
            display = coding.get("display") or concept.get("text")
            return str(display) if display else None
    return False


def _value(element: Mapping[str, Any]) -> tuple[float, str] | None:
    if isinstance(element.get("valueInteger"), int):
        return float(element["valueInteger"]), SCORE
    quantity = element.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        return None
    # Resources are read with their decimals exact (Decimal), as FHIR requires.
    value = quantity.get("value")
    if not isinstance(value, int | float | Decimal) or isinstance(value, bool):
        return None
    if quantity.get("system") == UCUM and quantity.get("code"):
        unit = str(quantity["code"])
    else:
        unit = str(quantity.get("unit") or quantity.get("code") or SCORE)
    return float(value), unit


def _time(resource: Mapping[str, Any]) -> datetime | None:
    for element in _TIME_ELEMENTS:
        value = resource.get(element)
        if isinstance(value, Mapping):
            value = value.get("start") or value.get("end")
        moment = _moment(value)
        if moment is not None:
            return moment
    return None


def _moment(value: Any) -> datetime | None:
    """A FHIR dateTime as an aware datetime (a date alone is its midnight, UTC)."""
    if not isinstance(value, str):
        return None
    text = value if len(value) >= 10 else (value + "-01-01")[:10]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _in_unit(point: Point, unit: str) -> Point:
    value = convert(point.value, point.unit, unit)
    if value is None:
        return replace(point, normalised=False)
    return replace(point, value=round(value, 6), unit=unit)


def _summary(points: Sequence[Point]) -> Summary | None:
    values = [p.value for p in points if p.normalised]
    if not values:
        return None
    return Summary(min(values), max(values), values[-1], direction(values))


def direction(values: Sequence[float]) -> str:
    """Rising or falling when the later half's mean differs from the earlier half's by more
    than 2% of the series' magnitude; steady otherwise."""
    if len(values) < 2:
        return STEADY
    half = len(values) // 2
    change = fmean(values[-half:]) - fmean(values[:half])
    magnitude = max(abs(fmean(values)), max(values) - min(values))
    if abs(change) <= STEADY_SHARE * magnitude:
        return STEADY
    return RISING if change > 0 else FALLING
