"""Scenario files: YAML validated into typed configs. Every key is documented in docs/scenarios.md.

Units are written out and parsed (`30 ms`, `20 Mbit/s`, `1200 B`); unknown keys are errors. An
error is one line naming the file, the line and the key: `lossy20.yaml:12: channel.loss.rate: ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator

from ..network.config import Bytes, ChannelConfig, Probability, Seconds, Strict
from ..network.loss_models import LOSS_MODELS, LossModelError, loss_model_names, parse_trace


class ScenarioError(ValueError):
    """One line: file:line: key: problem."""


class SourceConfig(Strict):
    images: str = "builtin"  # "builtin" (scikit-image samples) or a folder, relative to the scenario
    # a clip (mp4, webm, mkv, y4m, ... through PyAV, or a folder of numbered frames), relative to
    # the scenario, or a clip that ships inside a dependency: builtin, carphone, bikes; replaces `images`
    video: str | None = None
    # frames sent (`frames:` says the same for a clip); a clip shorter than this ends the stream
    count: int = Field(8, ge=1, le=1_000_000, validation_alias=AliasChoices("count", "frames"))
    size: tuple[int, int] | None = (256, 384)  # (height, width) every frame is cropped/resized to
    fps: float = Field(10.0, gt=0, le=1000)

    @field_validator("size")
    @classmethod
    def _size(cls, v):
        if v is not None and (v[0] < 16 or v[1] < 16 or v[0] > 4096 or v[1] > 4096):
            raise ValueError("size must be [height, width], each 16..4096 pixels")
        return v


def check_luma(chroma: int, luma: bool) -> None:
    """codec.luma and a method's luma ride in the colour side channel: they need its block size."""
    if luma and not chroma:
        raise ValueError("luma rides in the colour side channel: set chroma (a block size) too")


class CodecConfig(Strict):
    # the codebook level K; `codebook:` is the key's older name, still read
    level: int = Field(1024, validation_alias=AliasChoices("level", "codebook"))
    # bf16 only where the hardware has it natively (auto), or forced; auto device: CUDA if present
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    weights: str | None = None  # folder with tokenizer/levels weights; default: shipped
    # the colour side channel (codec/colour.py): Cb/Cr block means over this many pixels; 0 = off
    chroma: Literal[0, 16, 32, 64, 128] = 0
    chroma_step: int = Field(2, ge=1, le=15)
    luma: bool = False  # with chroma: the blocks' luma too (costs about half as much again)
    # a temporal token stream (codec/temporal.py): P-frames send only the tokens that changed;
    # absent: every frame intra, as a stream of stills
    temporal: "TemporalConfig | None" = None

    @model_validator(mode="after")
    def _luma_needs_chroma(self):
        check_luma(self.chroma, self.luma)
        return self


class TemporalConfig(Strict):
    # how long a loss can last: periodic I-frames, or a rolling intra band of columns, each
    # position sent at least once every `period` frames; none: only the first frame is intra
    refresh: Literal["periodic", "rolling", "none"] = "periodic"
    period: int = Field(30, ge=1, le=100_000)
    # the rate knob: a token is updated only where the new code lowers its latent distortion by
    # more than this many times the frame's mean quantisation error (0: wherever the code differs)
    threshold: float = Field(4.0, ge=0, le=1000)  # codec.temporal.DEFAULT_THRESHOLD

    def refresh_policy(self):
        from codec.temporal import Refresh

        return Refresh(self.refresh, self.period)


class PacketsConfig(Strict):
    mtu: Bytes = 1200.0
    max_tokens: int | None = Field(None, ge=1, le=65535)
    interleave: Literal["none", "random"] = "random"
    seed: int = Field(1, ge=0, lt=2**32)
    # full: every packet self-describing (28 bytes with its CRC); compact: RTP-like, 10 bytes (a
    # 6-byte transport shim and 4 bytes of position), the stream's constants signalled once
    header: Literal["full", "compact"] = "full"
    # packets of a frame that carry a copy of its colour section (with codec.chroma), spread over
    # the frame: a frame that lost every copy decodes without it
    colour_copies: int = Field(2, ge=1, le=8)
    # the coarse layer (codec/packets.py): each token's cell at this smaller level in packets of
    # their own, protection that lets the receiver choose a lost token among its cell's codes; 0 = off
    coarse: Literal[0, 16, 64, 256] = 0
    # cells per coarse packet; default twice max_tokens (codec.packets.coarse_max_tokens)
    coarse_tokens: int | None = Field(None, ge=1, le=8191)

    @property
    def coarse_max_tokens(self) -> int | None:
        from codec.packets import coarse_max_tokens

        return self.coarse_tokens if self.coarse_tokens is not None else coarse_max_tokens(self.max_tokens)


class ReceiverConfig(Strict):
    deadline: Seconds = 0.150
    # none, neighbour, transformer, or transformer:STEPS[:DECISION[:WINDOW]]
    recovery: list[str] = ["neighbour", "none"]

    @field_validator("recovery")
    @classmethod
    def _unique(cls, v):
        from recovery import RecoveryError, parse_method

        if not v or len(set(v)) != len(v):
            raise ValueError("list each recovery method once, at least one")
        for spec in v:
            try:
                parse_method(spec)
            except RecoveryError as e:
                raise ValueError(str(e)) from None
        return v


class SweepConfig(Strict):
    loss_rate: list[Probability] | None = None
    seeds: int = Field(1, ge=1, le=1000)


class LossVariant(Strict):
    """One loss process of a comparison, at each of the sweep's rates: a loss model whose rate can
    be swept (network.loss_models)."""
    model: str = "bernoulli"
    burst: float | None = Field(None, ge=1)  # mean burst length in packets (gilbert_elliott)

    @model_validator(mode="after")
    def _burst(self):
        if self.model not in loss_model_names(rated=True):
            raise ValueError(f"a comparison sweeps the loss rate: model must be one of {loss_model_names(rated=True)}")
        if self.model == "gilbert_elliott" and self.burst is None:
            raise ValueError("gilbert_elliott needs 'burst' (mean burst length in packets)")
        if self.model == "bernoulli" and self.burst is not None:
            raise ValueError("bernoulli losses have no 'burst'")
        return self

    @property
    def label(self) -> str:
        return self.model if self.burst is None else f"{self.model}(burst {self.burst:g})"


class MethodConfig(Strict):
    """One way to send the frames: a codec, its receiver-side recovery, and its protection."""
    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    codec: Literal["vq", "avif", "webp"] = "vq"
    downscale: int = Field(1, ge=1, le=8)  # avif/webp: code at 1/downscale of the size, upscale back
    recovery: str = "none"  # vq only: fills lost tokens (none, neighbour, transformer, ...)
    fec: Literal["none", "rs", "xor_rows", "xor_grid"] = "none"
    # parity packets per source packet, or "adaptive": Reed-Solomon sized from the reported loss
    parity: float | Literal["adaptive"] = 0.0
    nack: bool | Literal["auto"] = False  # auto: only where a round trip fits in the deadline
    header: Literal["compact", "full"] = "compact"  # vq packets' header (codec/packets.py)
    # vq only: the colour side channel's block side (0 = off), its step, luma too, packets with a copy
    chroma: Literal[0, 16, 32, 64, 128] = 0
    chroma_step: int = Field(2, ge=1, le=15)
    luma: bool = False
    colour_copies: int = Field(2, ge=1, le=8)
    # vq only: the coarse layer's level (packets.coarse), sent with the base level only; 0 = off
    coarse: Literal[0, 16, 64, 256] = 0

    @model_validator(mode="after")
    def _consistent(self):
        from recovery import RecoveryError, parse_method

        if self.codec != "vq" and self.chroma:
            raise ValueError(f"chroma is the vq codec's colour side channel; {self.codec} codes colour itself")
        if self.codec != "vq" and self.coarse:
            raise ValueError(f"coarse is the vq codec's coarse layer of token cells; {self.codec} has no tokens")
        check_luma(self.chroma, self.luma)

        if self.codec == "vq":
            try:
                parse_method(self.recovery)
            except RecoveryError as e:
                raise ValueError(str(e)) from None
            if self.downscale != 1:
                raise ValueError("downscale is for avif and webp; vq codes at full size")
        elif self.recovery != "none":
            raise ValueError(f"a {self.codec} frame with a packet missing cannot be decoded: recovery is for vq")
        if self.parity == "adaptive" and self.fec != "rs":
            raise ValueError("parity: adaptive sizes Reed-Solomon parities (fec: rs)")
        if isinstance(self.parity, float) and not 0 <= self.parity <= 4:
            raise ValueError("parity must be 0..4 parity packets per source packet, or 'adaptive'")
        if self.fec in ("rs", "xor_rows") and self.parity == 0:
            raise ValueError(f"fec: {self.fec} needs parity > 0 (or 'adaptive')")
        if self.fec == "none" and self.parity != 0:
            raise ValueError("parity without fec")
        return self


class ComparisonConfig(Strict):
    """Methods side by side at equal bandwidth (docs/scenarios.md, `comparison:`)."""
    # bytes per frame every method may put on the wire, or "reference": each frame's own size
    # as the vq codec at codec.level sends it unprotected with compact headers
    budget: Literal["reference"] | Bytes = "reference"
    # every frame's budget times this: room for protection beyond the reference (e.g. 1.5)
    budget_scale: float = Field(1.0, gt=0, le=4)
    rtt: list[Seconds] = [0.02, 0.1]  # round-trip times; each way takes half
    loss_models: list[LossVariant] = [LossVariant(), LossVariant(model="gilbert_elliott", burst=3)]
    reverse_loss: Literal["same"] | Probability = "same"  # NACK path: the forward rate, or this
    max_retries: int = Field(2, ge=1, le=10)
    methods: list[MethodConfig]

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, v):
        if v == "reference":
            return v
        from ..units import parse_size

        try:
            size = parse_size(v)
        except ValueError as e:
            raise ValueError(f"expected 'reference' or a size per frame such as '600 B' ({e})") from None
        if size <= 0:
            raise ValueError(f"a budget of {v!r} leaves nothing to send: give a positive size or 'reference'")
        return size

    @field_validator("methods")
    @classmethod
    def _unique(cls, v):
        names = [m.name for m in v]
        if not v or len(set(names)) != len(names):
            raise ValueError("list each method once (unique names), at least one")
        return v


CodecConfig.model_rebuild()


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    source: SourceConfig = SourceConfig()
    codec: CodecConfig = CodecConfig()
    packets: PacketsConfig = PacketsConfig()
    channel: ChannelConfig = ChannelConfig()
    receiver: ReceiverConfig = ReceiverConfig()
    sweep: SweepConfig = SweepConfig()
    # image-quality metrics beside PSNR and MS-SSIM (simnet/experiment/metrics.py)
    metrics: list[str] = ["psnr", "ms_ssim"]
    comparison: ComparisonConfig | None = None  # methods at equal bandwidth (simnet/experiment/compare.py)
    seed: int = Field(0, ge=0, lt=2**32)
    path: Path | None = Field(None, exclude=True)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v):
        from .metrics import MetricError, parse_names

        try:
            return parse_names(v)
        except MetricError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _sweep_needs_a_rate_model(self):
        if self.codec.temporal is not None and self.packets.coarse:
            raise ValueError("packets.coarse: the coarse layer sends every token's cell each frame; a temporal "
                             "stream (codec.temporal) sends only what changed")
        if self.codec.temporal is not None and self.comparison is not None:
            raise ValueError("codec.temporal: a comparison at equal bandwidth codes stills; run the temporal "
                             "stream as a scenario of its own")
        if self.comparison is not None and self.packets.coarse:
            raise ValueError("packets.coarse: in a comparison, each method says its own `coarse:`")
        if self.comparison is not None:
            for variant in self.comparison.loss_models:
                for rate in self.loss_rates():
                    try:
                        LOSS_MODELS[variant.model].check_rate(variant, rate)
                    except LossModelError as e:
                        raise ValueError(f"comparison.loss_models: {e}") from None
            return self
        loss = self.channel.loss
        if self.sweep.loss_rate and LOSS_MODELS[loss.model].check_rate is None:
            raise ValueError(f"sweep.loss_rate needs channel.loss.model one of {loss_model_names(rated=True)}")
        for rate in self.sweep.loss_rate or []:
            try:
                LOSS_MODELS[loss.model].check_rate(loss, rate)
            except LossModelError as e:
                raise ValueError(f"sweep.loss_rate: {e}") from None
        return self

    def with_compute(self, device: str | None = None, precision: str | None = None) -> "Scenario":
        """This scenario with the command line's --device / --precision (None: keep the file's)."""
        update = {k: v for k, v in (("device", device), ("precision", precision)) if v is not None}
        if not update:
            return self
        return self.model_copy(update={"codec": self.codec.model_copy(update=update)})

    def resolve(self, relative: str | None) -> Path | None:
        """A path from the scenario, relative to the scenario file's folder."""
        if relative is None:
            return None
        p = Path(relative)
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p

    def loss_rates(self) -> list[float]:
        """The sweep's loss rates, or the channel's single one."""
        if self.sweep.loss_rate:
            return list(self.sweep.loss_rate)
        loss = self.channel.loss
        return [loss.rate if loss.rate is not None else 0.0]


def _key_lines(node, path=(), out=None) -> dict[tuple, int]:
    """Map each key path in a composed YAML tree to its 1-based line."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, key_node.value)
            out[key] = key_node.start_mark.line + 1
            _key_lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _key_lines(item, (*path, i), out)
    return out


def _read_yaml(path: Path) -> tuple[dict, dict[tuple, int]]:
    """-> (the mapping, each key path's line)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (IsADirectoryError, UnicodeDecodeError, OSError) as e:
        raise ScenarioError(f"{path}: cannot read ({type(e).__name__})") from None
    try:
        data = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text)) if data is not None else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScenarioError(f"{path}{where}: invalid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}:1: a scenario is a mapping of keys (name, source, channel, ...)")
    return data, lines


def _validation_error(path: Path, error: ValidationError, lines: dict[tuple, int]) -> ScenarioError:
    """pydantic's first error as one line: file:line: key: problem."""
    err = error.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in (
        "function-after", "literal", "int", "float", "str", "list", "tuple", "none")))) or ()
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
    key = ".".join(str(p) for p in loc) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    return ScenarioError(f"{path}{f':{line}' if line else ''}: {key}: {msg}")


def _check_files(path: Path, scenario: Scenario, lines: dict[tuple, int]) -> None:
    """The files and folders the scenario names exist (and a loss trace parses)."""
    def where(*key):
        return f"{path}:{lines[key]}" if key in lines else str(path)

    from codec.video import BUILTIN_CLIPS

    video = scenario.source.video if scenario.source.video not in BUILTIN_CLIPS else None
    for label, rel in (("channel.loss.file", scenario.channel.loss.file), ("source.video", video)):
        if rel and not (scenario.resolve(rel).is_file() or (label == "source.video" and scenario.resolve(rel).is_dir())):
            raise ScenarioError(f"{where(*label.split('.'))}: {label}: file not found: {scenario.resolve(rel)}")
    if scenario.source.video:  # a clip that cannot be opened is named now, before any model loads
        from codec.video import VideoError, builtin_clip, clip_info

        try:
            clip_info(builtin_clip(scenario.source.video) if video is None else scenario.resolve(video))
        except VideoError as e:
            raise ScenarioError(f"{where('source', 'video')}: source.video: {e}") from None
    if scenario.source.images != "builtin" and not scenario.source.video:
        folder = scenario.resolve(scenario.source.images)
        if not folder.is_dir():
            raise ScenarioError(f"{where('source', 'images')}: source.images: not 'builtin' nor a folder: {folder}")
    if scenario.channel.loss.model == "trace":
        try:
            parse_trace(scenario.resolve(scenario.channel.loss.file))
        except LossModelError as e:
            raise ScenarioError(f"{path}: channel.loss.file: {e}") from None


def load_scenario(path: Path) -> Scenario:
    """A scenario file, validated; any problem is one ScenarioError line naming file, line and key."""
    path = Path(path)
    data, lines = _read_yaml(path)
    try:
        scenario = Scenario.model_validate({**data, "path": path})
    except ValidationError as e:
        raise _validation_error(path, e, lines) from None
    _check_files(path, scenario, lines)
    return scenario
