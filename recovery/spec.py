"""Recovery specs as users write them ('transformer:8:argmax+conceal'): the method's name, its
options, and the '+conceal' suffix."""

from __future__ import annotations

from .base import RecoveryError
from .registry import RECOVERIES

CONCEAL = "+conceal"  # a method's suffix: the codec's concealing decoder renders what it filled


def conceals(spec: str) -> bool:
    """Whether the method `spec` (e.g. 'transformer+conceal') decodes with the concealing decoder."""
    return spec.strip().endswith(CONCEAL)


def parse_method(spec: str) -> tuple[str, dict]:
    """'transformer:STEPS[:DECISION[:WINDOW]]' -> ('transformer', {'steps': STEPS, 'decision':
    DECISION, 'window': WINDOW}); DECISION is mmse (the PSNR-optimal code, default), argmax, or
    sample / sample@T (drawn at temperature T, seeded); WINDOW is the attention window in tokens or
    'grid' (the whole grid). Other names take no options. Any of them may end in '+conceal' (see `conceals`)."""
    spec = spec.strip().removesuffix(CONCEAL)
    name, *opts = spec.split(":")
    if name not in RECOVERIES:
        raise RecoveryError(f"unknown recovery method {name!r} (expected one of {list(RECOVERIES)})")
    options = RECOVERIES[name].options
    if opts and options is None:
        raise RecoveryError(f"{spec!r}: only the transformer takes options (transformer:STEPS[:DECISION[:WINDOW]])")
    return name, options(spec, opts) if opts else {}
