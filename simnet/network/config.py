"""The channel's configuration (the `channel:` key of a scenario): bandwidth, delay, queue, loss,
duplication, bit errors and cross traffic, validated on construction. Every key is documented in
docs/scenarios.md."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ..units import parse_rate, parse_size, parse_time
from .loss_models import LOSS_MODELS, loss_model_names

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
    model: str = "none"  # a registered loss model (loss_models.LOSS_MODELS)
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
    params: dict[str, float] = {}  # a registered model's own parameters, beyond the keys above

    @field_validator("model")
    @classmethod
    def _registered(cls, v):
        if v not in LOSS_MODELS:
            raise ValueError(f"unknown loss model {v!r} (have {loss_model_names()})")
        return v

    @model_validator(mode="after")
    def _parameters(self):
        LOSS_MODELS[self.model].check(self)
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


