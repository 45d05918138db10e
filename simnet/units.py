"""Quantities with units, as written in scenario files: `30 ms`, `20 Mbit/s`, `1200 B`.

Each parser returns a float in SI base units (seconds, bits per second, bytes) and raises
ValueError with a message that says what was expected.
"""

from __future__ import annotations

import math
import re

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_PATTERN = re.compile(rf"^\s*{_NUMBER}\s*(\S*)\s*$")

TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0}
RATE_UNITS = {"bit/s": 1.0, "bps": 1.0, "kbit/s": 1e3, "kbps": 1e3, "Mbit/s": 1e6, "Mbps": 1e6,
              "Gbit/s": 1e9, "Gbps": 1e9, "B/s": 8.0, "kB/s": 8e3, "MB/s": 8e6}
SIZE_UNITS = {"B": 1.0, "bytes": 1.0, "kB": 1e3, "KiB": 1024.0, "MB": 1e6, "MiB": 1024.0**2}


def _parse(value, units: dict[str, float], what: str, default_unit: str | None) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a {what} such as '{_example(units)}', got {value!r}")
    if isinstance(value, (int, float)):
        if default_unit is None:
            raise ValueError(f"expected a {what} with a unit such as '{_example(units)}', got {value!r}")
        number, unit = float(value), default_unit
    elif isinstance(value, str):
        m = _PATTERN.match(value)
        if not m:
            raise ValueError(f"expected a {what} such as '{_example(units)}', got {value!r}")
        number, unit = float(m.group(1)), m.group(2) or default_unit
        if unit is None:
            raise ValueError(f"{value!r} lacks a unit (one of {', '.join(units)})")
    else:
        raise ValueError(f"expected a {what} such as '{_example(units)}', got {value!r}")
    if unit not in units:
        raise ValueError(f"unknown unit {unit!r} for a {what} (use one of {', '.join(units)})")
    result = number * units[unit]
    if not math.isfinite(result):
        raise ValueError(f"{value!r} is not a finite {what}")
    return result


def _example(units: dict[str, float]) -> str:
    return {id(TIME_UNITS): "30 ms", id(RATE_UNITS): "20 Mbit/s", id(SIZE_UNITS): "1200 B"}[id(units)]


def parse_time(value, default_unit: str | None = None) -> float:
    """-> seconds."""
    return _parse(value, TIME_UNITS, "duration", default_unit)


def parse_rate(value, default_unit: str | None = None) -> float:
    """-> bits per second."""
    return _parse(value, RATE_UNITS, "bit rate", default_unit)


def parse_size(value, default_unit: str | None = "B") -> float:
    """-> bytes. A bare number means bytes."""
    return _parse(value, SIZE_UNITS, "size", default_unit)


def format_time(seconds: float) -> str:
    """Seconds as written in a scenario: `0.03` -> `30 ms`."""
    return f"{seconds * 1e3:g} ms"


def format_rate(bps: float) -> str:
    """Bits per second as written in a scenario: `2e7` -> `20 Mbit/s`."""
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:g} {unit}"
    return f"{bps:g} bit/s"
