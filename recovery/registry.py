"""The recovery methods by name. Adding one is its own file and one `register_recovery` line
here (or anywhere before a scenario names it): scenarios, the command line and the comparisons
find it by the name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Recovery


@dataclass(frozen=True)
class RecoveryKind:
    load: Callable[..., Recovery]  # (**options, **placement) -> the method
    # (spec, [option strings]) -> keyword options for `load`; None: the method takes no options
    options: Callable[[str, list[str]], dict] | None = None
    placed: bool = False  # it runs a model: `load` takes precision= and device= (and weights=)


RECOVERIES: dict[str, RecoveryKind] = {}


def register_recovery(name: str, kind: RecoveryKind) -> None:
    if ":" in name or "+" in name:
        raise ValueError(f"recovery method {name!r}: a name without ':' or '+' (they separate options)")
    if name in RECOVERIES:
        raise ValueError(f"recovery method {name!r} is registered twice")
    RECOVERIES[name] = kind


def _transformer(**kwargs) -> Recovery:
    from .transformer_recovery import TransformerRecovery

    return TransformerRecovery.from_weights(**kwargs)


def _temporal(**kwargs) -> Recovery:
    from .transformer_recovery import TransformerRecovery, default_temporal_weights

    kwargs.setdefault("weights", default_temporal_weights())
    # argmax, not MMSE: most of its posterior sits on the previous token and the rest is spread, so
    # the posterior mean's nearest code is often neither (measured on carphone, held out, 24 frames
    # at 20% loss: argmax 18.78 dB, MMSE 17.75, `previous` 18.87)
    kwargs.setdefault("decision", "argmax")
    return TransformerRecovery.from_weights(**kwargs)


def _transformer_options(spec: str, opts: list[str]) -> dict:
    from .transformer_recovery import transformer_options

    return transformer_options(spec, opts)


def _register_shipped() -> None:
    from .baselines import NeighbourRecovery, NoneRecovery, PreviousRecovery

    # the baselines run on the CPU in integer and fp32 arithmetic: no placement
    register_recovery("none", RecoveryKind(NoneRecovery))
    register_recovery("neighbour", RecoveryKind(NeighbourRecovery))
    register_recovery("previous", RecoveryKind(PreviousRecovery))
    register_recovery("transformer", RecoveryKind(_transformer, _transformer_options, placed=True))
    # the spatio-temporal transformer: the same model with the previous frame's tokens as input
    register_recovery("temporal", RecoveryKind(_temporal, _transformer_options, placed=True))


_register_shipped()
