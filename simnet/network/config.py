"""The channel's configuration (the `channel:` key of a scenario): bandwidth, delay, queue, loss,
duplication, bit errors and cross traffic, validated on construction. Every key is documented in
docs/scenarios.md."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ..units import parse_rate, parse_size, parse_time
from .loss_models import LossModelError, gilbert_elliott_p

Seconds = Annotated[float, BeforeValidator(lambda v: parse_time(v)), Field(ge=0)]
BitsPerSecond = Annotated[float, BeforeValidator(lambda v: parse_rate(v)), Field(gt=0)]
Bytes = Annotated[float, BeforeValidator(lambda v: parse_size(v)), Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DelayConfig(Strict):
    base: Seconds = 0.030
    jitter: Seconds = 0.0
    distribution: Literal["normal", "uniform", "exponential", "pareto"] = "normal"
    reorder: bool = False


class QueueConfig(Strict):
    packets: int | None = Field(None, ge=1)
    bytes: Bytes | None = None


class LossConfig(Strict):
    model: Literal["none", "bernoulli", "gilbert_elliott", "four_state", "trace"] = "none"
    rate: Probability | None = None
    burst: float | None = Field(None, ge=1)
    p: Probability | None = None
    r: Probability | None = None
    one_minus_h: Probability = 1.0
    one_minus_k: Probability = 0.0
    p13: Probability | None = None
    p31: Probability | None = None
    p32: Probability = 0.0
    p23: Probability = 1.0
    p14: Probability = 0.0
    file: str | None = None

    @model_validator(mode="after")
    def _parameters(self):
        m = self.model
        if m == "bernoulli" and self.rate is None:
            raise ValueError("bernoulli needs 'rate'")
        if m == "gilbert_elliott":
            if self.rate is not None:
                if self.burst is None:
                    raise ValueError("gilbert_elliott with 'rate' needs 'burst' (mean burst length)")
                try:
                    gilbert_elliott_p(self.rate, self.burst)
                except LossModelError as e:
                    raise ValueError(str(e)) from None
            elif self.p is None or self.r is None:
                raise ValueError("gilbert_elliott needs 'rate' and 'burst', or 'p' and 'r'")
        if m == "four_state" and (self.p13 is None or self.p31 is None):
            raise ValueError("four_state needs at least 'p13' and 'p31'")
        if m == "trace" and not self.file:
            raise ValueError("trace needs 'file'")
        return self


class CrossTrafficConfig(Strict):
    rate: BitsPerSecond
    packet: Bytes = 1200.0


class ChannelConfig(Strict):
    bandwidth: BitsPerSecond = 20e6
    delay: DelayConfig = DelayConfig()
    queue: QueueConfig = QueueConfig(packets=200)
    loss: LossConfig = LossConfig()
    duplicate: Probability = 0.0
    bit_error_rate: Probability = 0.0
    cross_traffic: CrossTrafficConfig | None = None


