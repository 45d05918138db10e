"""recovery: filling lost VQ indices before decoding. Uses only codec's token types."""

from __future__ import annotations

from .base import Recovery, RecoveryError
from .baselines import NeighbourRecovery, NoneRecovery

BASELINES = {"none": NoneRecovery, "neighbour": NeighbourRecovery}


def available_methods() -> list[str]:
    return list(BASELINES) + ["transformer"]


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
    if name not in available_methods():
        raise RecoveryError(f"unknown recovery method {name!r} (expected one of {available_methods()})")
    if opts and name != "transformer":
        raise RecoveryError(f"{spec!r}: only the transformer takes options (transformer:STEPS[:DECISION[:WINDOW]])")
    if len(opts) > 3:
        raise RecoveryError(f"{spec!r}: expected transformer:STEPS[:DECISION[:WINDOW]]")
    kwargs: dict = {}
    if opts:
        try:
            kwargs["steps"] = int(opts[0])
        except ValueError:
            raise RecoveryError(f"{spec!r}: decoding steps must be an integer, got {opts[0]!r}") from None
        if kwargs["steps"] < 1:
            raise RecoveryError(f"{spec!r}: decoding steps must be >= 1")
    if len(opts) >= 2:
        from .transformer_recovery import DECISIONS

        decision, _, temperature = opts[1].partition("@")
        if decision not in DECISIONS or (temperature and decision != "sample"):
            raise RecoveryError(f"{spec!r}: decision must be one of {list(DECISIONS)} (sample@T: at temperature T)")
        kwargs["decision"] = decision
        if temperature:
            try:
                kwargs["temperature"] = float(temperature)
            except ValueError:
                raise RecoveryError(f"{spec!r}: temperature must be a number, got {temperature!r}") from None
            if not 0 < kwargs["temperature"] <= 10:
                raise RecoveryError(f"{spec!r}: temperature must be in (0, 10]")
    if len(opts) == 3:
        if opts[2] == "grid":
            kwargs["window"] = None
        elif opts[2].isdigit() and int(opts[2]) >= 1:
            kwargs["window"] = int(opts[2])
        else:
            raise RecoveryError(f"{spec!r}: window must be a number of tokens >= 1 or 'grid', got {opts[2]!r}")
    return name, kwargs


def get_method(spec: str, **kwargs) -> Recovery:
    """A recovery method by name, e.g. 'neighbour', 'transformer' or 'transformer:1' (one-shot) or
    'transformer:8:argmax'. The transformer loads its shipped weights (or `weights=`); `precision=`
    and `device=` place it (codec.hardware.resolve)."""
    name, options = parse_method(spec)
    if name in BASELINES:  # they run on the CPU in integer and fp32 arithmetic
        method = BASELINES[name]()
    else:
        from .transformer_recovery import TransformerRecovery

        method = TransformerRecovery.from_weights(**options, **kwargs)
    method.name = spec
    method.conceal = conceals(spec)
    return method


__all__ = ["Recovery", "RecoveryError", "available_methods", "conceals", "get_method", "parse_method"]
