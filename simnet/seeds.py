"""Stable seeds: every random element of a run, and every loss pattern of an evaluation, draws
from its own generator seeded by the run's seed and the element's name, so one element's draws
never shift another's and the same seed gives the same results, bit for bit."""

from __future__ import annotations

import zlib


def element_seed(*parts) -> int:
    """A stable 32-bit seed from `parts` (numbers and names); Python's hash() is salted per
    process, so it cannot serve."""
    return zlib.crc32(repr(parts).encode())
