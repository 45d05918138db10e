"""Packet loss models. Each owns its seeded generator and answers `drop(t=None) -> bool` once per
packet, in sending order.

- Bernoulli(rate): independent losses.
- GilbertElliott(p, r, one_minus_h, one_minus_k): the two-state Markov channel in netem's
  `gemodel p r 1-h 1-k` parameters: p = P(good->bad), r = P(bad->good), 1-h = loss probability in
  the bad state, 1-k = loss probability in the good state. `from_rate_and_burst(L, B)` gives the
  simple Gilbert channel with mean loss rate L and mean burst length B: r = 1/B, p = L/(B(1-L)).
- FourState(p13, p31, p32, p23, p14): netem's `loss state` model (Salvo Markov chain): 1 good
  reception, 2 good reception within a burst, 3 burst loss, 4 isolated loss.
- Trace: a recorded loss pattern, either one 0/1 per packet (1 = lost, cycled when exhausted)
  or loss intervals in milliseconds of sending time.

Each kind is registered by name (`register_loss_model`: how to build it, check its keys, say it in
words, and whether its rate can be swept); `make_loss_model` builds the model a channel
configuration names; the simulator and the live MQTT channel both use it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


class LossModelError(ValueError):
    pass


def _probability(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise LossModelError(f"{name} = {value} is not a probability in [0, 1]")
    return value


class Bernoulli:
    def __init__(self, rate: float, seed: int):
        self.rate = _probability("loss rate", rate)
        self.rng = np.random.default_rng(seed)

    def drop(self, t: float | None = None) -> bool:
        return bool(self.rng.random() < self.rate)

    @property
    def mean_loss_rate(self) -> float:
        return self.rate

    @property
    def mean_burst_length(self) -> float:
        return 1 / (1 - self.rate) if self.rate < 1 else float("inf")


def gilbert_elliott_p(rate: float, burst: float) -> float:
    """P(good->bad) of the simple Gilbert channel with mean loss `rate` and mean burst length
    `burst` (r = 1/burst), or LossModelError where no such channel exists."""
    rate = _probability("loss rate", rate)
    if burst < 1:
        raise LossModelError(f"mean burst length {burst} is below 1 packet")
    if rate >= 1:
        raise LossModelError("loss rate 1 cannot have a finite burst length")
    p = rate / (burst * (1 - rate))
    if p > 1:
        raise LossModelError(f"loss rate {rate} with burst {burst} is impossible (needs p = {p:.3f} > 1); "
                             f"lower the rate or lengthen the bursts")
    return p


class GilbertElliott:
    def __init__(self, p: float, r: float, one_minus_h: float = 1.0, one_minus_k: float = 0.0,
                 seed: int = 0):
        self.p, self.r = _probability("p", p), _probability("r", r)
        self.loss_bad = _probability("1-h", one_minus_h)
        self.loss_good = _probability("1-k", one_minus_k)
        if self.p + self.r == 0:
            raise LossModelError("p and r are both 0: the channel never changes state")
        self.rng = np.random.default_rng(seed)
        # start in the stationary distribution, so short runs are unbiased
        self.bad = bool(self.rng.random() < self.p / (self.p + self.r))

    @classmethod
    def from_rate_and_burst(cls, rate: float, burst: float, seed: int = 0) -> "GilbertElliott":
        return cls(gilbert_elliott_p(rate, burst), 1.0 / burst, 1.0, 0.0, seed=seed)

    def drop(self, t: float | None = None) -> bool:
        lost = self.rng.random() < (self.loss_bad if self.bad else self.loss_good)
        if self.rng.random() < (self.r if self.bad else self.p):
            self.bad = not self.bad
        return bool(lost)

    @property
    def mean_loss_rate(self) -> float:
        return (self.p * self.loss_bad + self.r * self.loss_good) / (self.p + self.r)

    @property
    def mean_burst_length(self) -> float:
        """Exact for the simple Gilbert channel (1-h = 1, 1-k = 0): 1/r."""
        return 1 / self.r if self.r > 0 else float("inf")


class FourState:
    """netem `loss state p13 p31 p32 p23 p14`."""

    def __init__(self, p13: float, p31: float, p32: float = 0.0, p23: float = 1.0, p14: float = 0.0,
                 seed: int = 0):
        self.p13, self.p31 = _probability("p13", p13), _probability("p31", p31)
        self.p32, self.p23 = _probability("p32", p32), _probability("p23", p23)
        self.p14 = _probability("p14", p14)
        if self.p13 + self.p14 > 1 or self.p31 + self.p32 > 1:
            raise LossModelError("p13 + p14 and p31 + p32 must each be at most 1")
        self.rng = np.random.default_rng(seed)
        self.state = 1
        self._cumulative = np.cumsum(self.transition_matrix(), axis=1)

    def transition_matrix(self) -> np.ndarray:
        m = np.zeros((4, 4))
        m[0] = [1 - self.p13 - self.p14, 0, self.p13, self.p14]
        m[1] = [0, 1 - self.p23, self.p23, 0]
        m[2] = [self.p31, self.p32, 1 - self.p31 - self.p32, 0]
        m[3] = [1, 0, 0, 0]
        return m

    def drop(self, t: float | None = None) -> bool:
        u = self.rng.random()
        row = self._cumulative[self.state - 1]
        self.state = min(int(np.searchsorted(row, u, side="right")), 3) + 1
        return self.state in (3, 4)

    def stationary(self) -> np.ndarray:
        m = self.transition_matrix()
        w, v = np.linalg.eig(m.T)
        pi = np.real(v[:, np.argmin(np.abs(w - 1))])
        return pi / pi.sum()

    @property
    def mean_loss_rate(self) -> float:
        pi = self.stationary()
        return float(pi[2] + pi[3])


class Trace:
    """Loss from a file: either 0/1 per packet (whitespace or newline separated; # comments), or
    lines `START_MS END_MS` of intervals during which every packet sent is lost."""

    def __init__(self, path: Path, offset: int = 0):
        self.path = Path(path)
        self.pattern, self.intervals = parse_trace(self.path)
        self.position = offset

    def drop(self, t: float | None = None) -> bool:
        if self.pattern is not None:
            lost = self.pattern[self.position % len(self.pattern)]
            self.position += 1
            return bool(lost)
        if t is None:
            raise LossModelError(f"{self.path}: an interval trace needs packet send times")
        ms = t * 1000.0
        i = bisect.bisect_right(self.intervals[0], ms) - 1
        return i >= 0 and ms < self.intervals[1][i]

    @property
    def mean_loss_rate(self) -> float | None:
        return float(np.mean(self.pattern)) if self.pattern is not None else None


def parse_trace(path: Path):
    """-> (pattern array or None, (starts, ends) or None); errors name the file and line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise LossModelError(f"{path}: trace file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LossModelError(f"{path}: cannot read trace ({type(e).__name__})") from None
    bits, starts, ends = [], [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.replace(",", " ").split()
        if all(f in ("0", "1") for f in fields) and not starts:
            bits.extend(int(f) for f in fields)
            continue
        if len(fields) == 2 and not bits:
            try:
                a, b = float(fields[0]), float(fields[1])
            except ValueError:
                a = b = float("nan")
            if np.isfinite(a) and np.isfinite(b) and 0 <= a < b and (not ends or a >= ends[-1]):
                starts.append(a)
                ends.append(b)
                continue
        raise LossModelError(f"{path}:{lineno}: expected 0/1 flags or 'START_MS END_MS' "
                             f"(increasing, not overlapping), got {line[:40]!r}")
    if bits:
        return np.array(bits, dtype=np.uint8), None
    if starts:
        return None, (starts, ends)
    raise LossModelError(f"{path}: trace holds no data")


@dataclass(frozen=True)
class LossModelKind:
    """What the simulator, the scenario checks and the report need of one kind of loss model; a
    new model is its class and one `register_loss_model` line."""
    build: Callable  # (config, rate, seed, base_dir) -> a model with drop(t=None), or None: no loss
    check: Callable  # (config) -> None, or ValueError naming the key that is missing or wrong
    describe: Callable  # (config as a dict, as the results' meta holds it) -> the report's words
    # (config, rate) -> None, or LossModelError: the model takes a mean loss rate that a sweep or a
    # comparison may set; None: it cannot be swept
    check_rate: Callable | None = None


LOSS_MODELS: dict[str, LossModelKind] = {}


def register_loss_model(name: str, kind: LossModelKind) -> None:
    if name in LOSS_MODELS:
        raise ValueError(f"loss model {name!r} is registered twice")
    LOSS_MODELS[name] = kind


def loss_model_names(rated: bool = False) -> list[str]:
    """The registered models (`rated`: only those whose mean loss rate can be swept)."""
    return [n for n, k in LOSS_MODELS.items() if not rated or k.check_rate is not None]


def _percent(x: float) -> str:
    return f"{100 * x:.3g}%"


def _needs(cfg, *keys: str, why: str = "") -> None:
    missing = [k for k in keys if getattr(cfg, k, None) is None]
    if missing:
        raise ValueError(why or f"{cfg.model} needs {' and '.join(repr(k) for k in missing)}")


def _ge_rate(cfg, rate: float) -> None:
    if cfg.burst is None:
        raise LossModelError(f"sweeping a {cfg.model} loss rate needs channel.loss.burst")
    gilbert_elliott_p(rate, cfg.burst)


def _ge_check(cfg) -> None:
    if cfg.rate is not None:
        _needs(cfg, "burst", why="gilbert_elliott with 'rate' needs 'burst' (mean burst length)")
        try:
            gilbert_elliott_p(cfg.rate, cfg.burst)
        except LossModelError as e:
            raise ValueError(str(e)) from None
    else:
        _needs(cfg, "p", "r", why="gilbert_elliott needs 'rate' and 'burst', or 'p' and 'r'")


def _ge_build(cfg, rate, seed, base_dir):
    if rate == 0 and cfg.p is None:
        return None
    if rate is not None and cfg.burst is not None:
        return GilbertElliott.from_rate_and_burst(rate, cfg.burst, seed)
    return GilbertElliott(cfg.p, cfg.r, cfg.one_minus_h, cfg.one_minus_k, seed)


def _ge_describe(loss: dict) -> str:
    if loss.get("rate") is not None:
        return (f"bursty Gilbert-Elliott loss at {_percent(loss['rate'])} with mean bursts of "
                f"{loss['burst']:g} packets")
    return f"Gilbert-Elliott loss with p = {loss['p']:g}, r = {loss['r']:g}"


def _trace_build(cfg, rate, seed, base_dir):
    return Trace(Path(cfg.file) if base_dir is None else Path(base_dir) / cfg.file, offset=seed % 997)


register_loss_model("none", LossModelKind(lambda cfg, rate, seed, base_dir: None, lambda cfg: None,
                                          lambda loss: "no random loss"))
register_loss_model("bernoulli", LossModelKind(
    lambda cfg, rate, seed, base_dir: Bernoulli(rate, seed) if rate != 0 else None,
    lambda cfg: _needs(cfg, "rate"),
    lambda loss: f"independent (Bernoulli) loss at {_percent(loss['rate'])}",
    lambda cfg, rate: None))
register_loss_model("gilbert_elliott", LossModelKind(_ge_build, _ge_check, _ge_describe, _ge_rate))
register_loss_model("four_state", LossModelKind(
    lambda cfg, rate, seed, base_dir: FourState(cfg.p13, cfg.p31, cfg.p32, cfg.p23, cfg.p14, seed),
    lambda cfg: _needs(cfg, "p13", "p31", why="four_state needs at least 'p13' and 'p31'"),
    lambda loss: f"four-state Markov loss (p13 = {loss['p13']:g}, p31 = {loss['p31']:g})"))
register_loss_model("trace", LossModelKind(_trace_build, lambda cfg: _needs(cfg, "file", why="trace needs 'file'"),
                                           lambda loss: f"loss replayed from the trace {loss.get('file')}"))


def make_loss_model(cfg, rate: float | None, seed: int, base_dir=None):
    """The loss model a `LossConfig` names (None: no loss), with `rate` (a sweep's point)
    replacing the configured rate; a trace file is relative to `base_dir`."""
    if cfg.model not in LOSS_MODELS:
        raise ValueError(f"unknown loss model {cfg.model}")
    return LOSS_MODELS[cfg.model].build(cfg, cfg.rate if rate is None else rate, seed, base_dir)
