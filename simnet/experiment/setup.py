"""The one set-up that `run`, `sweep`, `eval` and the MQTT commands share: the codec with its level
checked, the recovery methods loaded, and the checksums that name every model in the results."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from codec.image_codec import ImageCodec
from codec.zoo import available_levels, load_codec
from recovery import parse_method, Recovery, RecoveryError, conceals, get_method

from ..errors import UserError
from .metrics import MetricSet
from .scenario import Scenario


@dataclass
class Setup:
    codec: ImageCodec
    level: int
    recoveries: dict[str, Recovery]  # spec (e.g. "transformer:8") -> method, in the user's order
    metrics: MetricSet | None = None  # further image-quality metrics (PSNR and MS-SSIM always)

    @property
    def compute(self) -> dict:
        """Device, precision and CPU capability, for the results' meta."""
        return self.codec.compute.describe()

    @property
    def checksums(self) -> dict[str, str]:
        """sha256 of the codec's weights and of each recovery model that has weights."""
        out = {"codec": self.codec.checksum}
        if self.codec.conceal_checksum and any(m.conceal for m in self.recoveries.values()):
            out["conceal"] = self.codec.conceal_checksum
        out.update({name: m.checksum for name, m in self.recoveries.items() if getattr(m, "checksum", None)})
        return out


def check_level(level: int, have: list[int], where: str) -> None:
    if level not in have:
        raise UserError(f"{where}: level {level} is not available (have {have})")


def prepare(weights: Path | None, precision: str, level: int, methods: list[str], where: str,
            device: str = "auto") -> Setup:
    """Load the codec (`weights` None: the shipped ones) and the recoveries, on one device at one
    precision (codec.hardware.resolve); `where` names the option or key that chose `level`, for
    the error when the codec lacks it."""
    codec = load_codec(weights, precision, device)
    check_level(level, codec.level_sizes, where)
    check_concealer(codec, methods)
    recoveries = {spec: recovery_for(spec, codec) for spec in methods}
    for spec, method in recoveries.items():
        check = getattr(method, "check_codebook", None)
        if check is None:
            continue
        try:
            check(level, codec.codebook(level))
        except RecoveryError as e:
            raise UserError(f"{spec}: {e}; the transformer trained on this codec's token grids goes beside "
                            f"its weights as {TRANSFORMER_FILE}") from None
    return Setup(codec, level, recoveries)


TRANSFORMER_FILE = "transformer.safetensors"
# each model-backed recovery's weights file, found beside a codec's own weights, and the variable
# that names one instead
MODEL_FILES = {"transformer": (TRANSFORMER_FILE, "SIMNET_TRANSFORMER_WEIGHTS"),
               "temporal": ("transformer-video.safetensors", "SIMNET_TEMPORAL_WEIGHTS")}


def recovery_for(spec: str, codec: ImageCodec) -> Recovery:
    """The recovery method `spec` for `codec`, on its device and precision. A transformer trained on
    this codec's token grids that sits beside its weights (TRANSFORMER_FILE) is the transformer's,
    unless SIMNET_TRANSFORMER_WEIGHTS names one; otherwise the shipped transformer, which refuses
    another codec's codebooks in one line."""
    name = parse_method(spec)[0]
    own = {}
    if name in MODEL_FILES and codec.weights_folder:
        file, env = MODEL_FILES[name]
        beside = codec.weights_folder / file
        own = {"weights": beside} if beside.is_file() and not os.environ.get(env) else {}
    return get_method(spec, precision=codec.precision, device=codec.device, **own)


def check_concealer(codec: ImageCodec, specs: list[str]) -> None:
    """A '+conceal' method needs the codec's concealing decoder: say so before any model loads."""
    wanting = [spec for spec in specs if conceals(spec)]
    if wanting and codec.concealer is None:
        raise UserError(f"{wanting[0]}: the weights folder has no concealing decoder (conceal.safetensors; "
                        f"train one with `simnet train conceal`)")


def level_key(scenario: Scenario) -> str:
    return f"{scenario.path}: codec.level"


def check_coarse(level: int, coarse: int, have: list[int], where: str) -> None:
    """A coarse layer needs the stream at the base level (the largest: each of its codes lies in
    one cell of every smaller level) and a smaller level the codec has."""
    if not coarse:
        return
    if level != max(have):
        raise UserError(f"{where}: the coarse layer needs codec.level {max(have)}, the base level whose codes "
                        f"the smaller levels group, not {level}")
    if coarse not in have:
        raise UserError(f"{where}: coarse level {coarse} is not available (have {[k for k in have if k < level]})")


def coarse_layers(scenario: Scenario) -> list[tuple[str, int]]:
    """(key, level) of each coarse layer the scenario sends: its packets', or its comparison
    methods'."""
    if scenario.comparison is None:
        return [(f"{scenario.path}: packets.coarse", scenario.packets.coarse)]
    return [(f"{scenario.path}: comparison method {m.name}: coarse", m.coarse)
            for m in scenario.comparison.methods if m.coarse]


def scenario_setup(scenario: Scenario) -> Setup:
    """The set-up of a scenario: its receiver's recoveries, or for a comparison those its VQ
    methods name."""
    methods = (list(dict.fromkeys(m.recovery for m in scenario.comparison.methods if m.codec == "vq"))
               if scenario.comparison is not None else list(scenario.receiver.recovery))
    setup = prepare(scenario.resolve(scenario.codec.weights), scenario.codec.precision,
                    scenario.codec.level, methods, level_key(scenario), scenario.codec.device)
    for where, coarse in coarse_layers(scenario):
        check_coarse(scenario.codec.level, coarse, setup.codec.level_sizes, where)
    setup.metrics = MetricSet(list(scenario.metrics))
    return setup


def check_scenario(scenario: Scenario) -> None:
    """What `scenario_setup` would refuse, found without loading any model (a sweep checks every
    scenario this way before any work starts)."""
    have = available_levels(scenario.resolve(scenario.codec.weights))
    check_level(scenario.codec.level, have, level_key(scenario))
    for where, coarse in coarse_layers(scenario):
        check_coarse(scenario.codec.level, coarse, have, where)

