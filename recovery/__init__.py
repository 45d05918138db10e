"""recovery: filling lost VQ indices before decoding. Uses only codec's token types.

`registry` names the methods, `spec` parses what users write, `get_method` builds one."""

from __future__ import annotations

from .base import Recovery, RecoveryError
from .registry import RECOVERIES, RecoveryKind, register_recovery
from .spec import CONCEAL, conceals, parse_method


def available_methods() -> list[str]:
    return list(RECOVERIES)


def get_method(spec: str, **kwargs) -> Recovery:
    """A recovery method by its spec, e.g. 'neighbour', 'transformer' or 'transformer:1' (one-shot)
    or 'transformer:8:argmax'. A method that runs a model (the transformer) loads its shipped
    weights (or `weights=`); `precision=` and `device=` place it (codec.hardware.resolve)."""
    name, options = parse_method(spec)
    kind = RECOVERIES[name]
    method = kind.load(**options, **(kwargs if kind.placed else {}))
    method.name = spec
    method.conceal = conceals(spec)
    return method


__all__ = ["CONCEAL", "RECOVERIES", "Recovery", "RecoveryError", "RecoveryKind", "available_methods", "conceals",
           "get_method", "parse_method", "register_recovery"]
