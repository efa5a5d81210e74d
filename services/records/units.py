"""Units of measure: converting a value between UCUM units with `ucumvert`, which reads UCUM
codes into `pint` units from the official UCUM definitions.

Only commensurable units convert (g and kg, mg/dL and g/L, mm[Hg] and kPa); mmol/L and mg/dL
do not, since that needs the substance's molar mass, which UCUM does not know.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from lark.exceptions import LarkError
from pint.errors import PintError

# pint's registry caches what it parsed in plain dicts: one conversion at a time per process.
_CONVERTING = threading.Lock()


@functools.cache
def _registry() -> Any:
    # Built once per process on first use (half a second: it parses UCUM's whole table).
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


@functools.cache
def _unit(code: str) -> Any:
    return _registry().from_ucum(code)


def convert(value: float, from_code: str, to_code: str) -> float | None:
    """`value` in `from_code` expressed in `to_code`, or None when UCUM cannot convert it."""
    if from_code == to_code:
        return value
    try:
        with _CONVERTING:
            quantity = _registry().Quantity(value, _unit(from_code)).to(_unit(to_code))
    except (LarkError, PintError, ValueError, TypeError, AttributeError):
        return None
    return float(quantity.magnitude)
