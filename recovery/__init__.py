"""recovery: filling lost VQ indices before decoding. Uses only codec's token types."""

from __future__ import annotations

from .base import Recovery, RecoveryError
from .baselines import NeighbourRecovery, NoneRecovery

BASELINES = {"none": NoneRecovery, "neighbour": NeighbourRecovery}


def available_methods() -> list[str]:
    return list(BASELINES) + ["transformer"]


def get_method(name: str, **kwargs) -> Recovery:
    """A recovery method by name. The transformer loads its shipped weights (or `weights=`)."""
    if name in BASELINES:
        return BASELINES[name]()
    if name == "transformer":
        from .transformer_recovery import TransformerRecovery

        return TransformerRecovery.from_weights(**kwargs)
    raise RecoveryError(f"unknown recovery method {name!r} (expected one of {available_methods()})")


__all__ = ["Recovery", "RecoveryError", "available_methods", "get_method"]
