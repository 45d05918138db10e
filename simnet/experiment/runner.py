"""Running a scenario: frames -> codec packets -> simulated channel -> depacketize -> recover ->
decode -> quality, for every loss rate and seed of the sweep, streamed into the results JSON.

Work is shared where the inputs are the same: each frame is encoded and packetized once, a frame
that repeats an image shares its tokens, a frame that lost no token reuses the lossless decode for
every recovery method, and methods that fill a frame alike share one decode. Pixels are not kept
for the run: each loss point reads the source again, and lossless decodes are kept within a
memory budget (`Pictures`), so memory is bounded by that, not by the clip's length.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.colour import ColourPlane
from codec.images import save_rgb
from codec.metrics import lost_split, quality
from codec.tokens import LossyTokenGrid, TokenGrid

from ..network.channel import ChannelOutcome, simulate_channel
from ..network.protection import SHIM_BYTES
from ..seeds import element_seed
from ..stream import CoarseLayer, Framing, StreamReceiver, StreamSender
from ..stream.codec import EncodedFrame as StreamFrame
from ..stream.vq import VQStreamCodec
from .frames import frames, lost_token_overlay
from .results import ResultsWriter
from .scenario import Scenario
from .setup import Setup

EXAMPLE_FRAMES = 2  # frames whose decodes are saved as images for the report's grids
FAST_PNG = 1  # zlib level of those working images: the report reads them back and compresses its own


@dataclass
class EncodedFrame:
    """A frame of the run as the stream's sender coded it, its wire packets and its lossless
    quality. Its pixels are not kept: `Pictures` gives them back (memory bounded, not by the clip)."""
    name: str
    sent: StreamFrame
    packets: list[bytes]
    lossless_quality: dict

    @property
    def pixels(self) -> int:
        h, w = self.grid.image_size
        return h * w

    @property
    def grid(self) -> TokenGrid:
        return self.sent.extra["grid"]

    @property
    def payload_bytes(self) -> int:
        """The tokens' payloads, every copy of the colour section, the coarse layer's payloads."""
        return self.sent.payload_bytes

    @property
    def chroma(self) -> ColourPlane | None:
        return self.sent.extra["chroma"]

    @property
    def colour_bytes(self) -> int:
        return self.sent.extra["colour_bytes"]

    @property
    def coarse_bytes(self) -> int:
        return self.sent.extra["coarse_bytes"]


@dataclass
class RunTimings:
    encode_s: float = 0.0
    simulate_s: float = 0.0
    recover_s: float = 0.0
    decode_s: float = 0.0
    metrics_s: float = 0.0

    def as_dict(self) -> dict:
        return {k: round(v, 3) for k, v in vars(self).items()}


def stream_sender(setup: Setup, scenario: Scenario) -> StreamSender:
    """The scenario's sender: the VQ codec at its level, the coarse layer where it sends one, and
    its packets' framing (compact headers travel behind the transport shim)."""
    cfg, codec_cfg = scenario.packets, scenario.codec
    compact = cfg.header == "compact"
    vq = VQStreamCodec(setup.codec, level=setup.level, mtu=cfg.mtu, max_tokens=cfg.max_tokens,
                       interleave=cfg.interleave, seed=cfg.seed, header=cfg.header,
                       framing=SHIM_BYTES if compact else 0, chroma=codec_cfg.chroma,
                       chroma_step=codec_cfg.chroma_step, luma=codec_cfg.luma, colour_copies=cfg.colour_copies,
                       refresh=codec_cfg.temporal.refresh_policy() if codec_cfg.temporal else None,
                       **({"threshold": codec_cfg.temporal.threshold} if codec_cfg.temporal else {}))
    layers = [CoarseLayer(cfg.coarse, cfg.coarse_max_tokens)] if cfg.coarse else []
    return StreamSender(vq, layers, Framing(shim=compact))


class Pictures:
    """The run's frames again with their lossless decodes, frame by frame from a fresh pass over
    the source: a decode is kept while the bytes of those kept stay under `budget` (a source that
    cycles through a few images keeps them all; a long video keeps none), else made again."""

    def __init__(self, source, vq, timings: RunTimings, budget: int = 256 * 2**20):
        self.source, self.vq, self.timings, self.budget = source, vq, timings, budget
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()

    def keep(self, name: str, lossless: np.ndarray) -> None:
        self._kept[name] = lossless
        self._kept.move_to_end(name)
        while sum(a.nbytes for a in self._kept.values()) > self.budget and len(self._kept) > 1:
            self._kept.popitem(last=False)

    def lossless(self, f: EncodedFrame) -> np.ndarray:
        if f.name not in self._kept:
            t0 = time.perf_counter()
            self.keep(f.name, self.vq.lossless(f.sent))
            self.timings.decode_s += time.perf_counter() - t0
        self._kept.move_to_end(f.name)
        return self._kept[f.name]

    def walk(self, encoded: list[EncodedFrame]):
        """(frame, its pixels, its lossless decode) for each frame of `encoded`, in order."""
        for f, (_, rgb) in zip(encoded, self.source()):
            yield f, rgb, self.lossless(f)


def encode_frames(sender: StreamSender, frames, timings: RunTimings, pictures: Pictures, progress=None,
                  metrics=None, count=None):
    """Encode and packetize every frame, and score its lossless decode. A frame that repeats an
    earlier image (sources cycle through their images) shares its grid and decode."""
    out = []
    vq = sender.codec
    by_image: dict[int, tuple] = {}  # the frames' arrays are shared where the source repeats an image
    temporal = getattr(vq, "temporal", None) is not None  # every frame coded against the one before
    for i, (name, rgb) in enumerate(frames):
        key = i if temporal else id(rgb)
        t0 = time.perf_counter()
        if key not in by_image:
            frame = sender.encode(i, rgb)
            timings.encode_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            lossless = vq.lossless(frame)
            timings.decode_s += time.perf_counter() - t0
            pictures.keep(name, lossless)
            by_image[key] = (frame.extra["grid"], quality(rgb, lossless, metrics or None, ssim=temporal))
            t0 = time.perf_counter()
        else:
            frame = sender.encode(i, rgb, grid=by_image[key][0])
        wire = sender.framing(frame).sources
        timings.encode_s += time.perf_counter() - t0
        out.append(EncodedFrame(name, frame, wire, by_image[key][1]))
        if progress:
            progress(i + 1, count)
    return out


def colour_fields(f: EncodedFrame, received: bool) -> dict:
    """A record's colour side-channel fields (none where the scenario sends none)."""
    if f.chroma is None:
        return {}
    return {"chroma_block": f.chroma.block, "chroma_luma": f.chroma.luma is not None,
            "bits_colour": f.colour_bytes * 8, "colour_received": received}


def coarse_fields(f: EncodedFrame, level: int, lossy: LossyTokenGrid | None = None) -> dict:
    """A record's coarse-layer fields (none where the scenario sends none): its level and bits,
    and after loss the share of the lost tokens whose cell arrived."""
    if not level:
        return {}
    fields = {"coarse_level": level, "bits_coarse": f.coarse_bytes * 8}
    if lossy is not None:
        lost = lossy.missing
        fields["cells_known"] = float(lossy.cells.known[lost].mean()) if lost.any() else None
    return fields


def frames_to_repair(records: list[dict]) -> None:
    """Each record of a frame that lost tokens gets `frames_to_repair`: how many frames on, for its
    method, the receiver first holds no guessed token (none lost, none stale); None where the
    stream ended first."""
    by_method: dict[str, list[dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    for recs in by_method.values():
        recs.sort(key=lambda r: r["frame"])
        clean_at = None
        for r in reversed(recs):
            if not r["tokens_lost"] and not r["tokens_stale"]:
                clean_at = r["frame"]
            elif r["tokens_lost"]:
                r["frames_to_repair"] = clean_at - r["frame"] if clean_at is not None else None


def temporal_fields(f: EncodedFrame, temporal: bool) -> dict:
    """A temporal stream's per-frame fields: its type, bits and share of tokens updated."""
    if not temporal:
        return {}
    return {"frame_type": f.sent.frame_type, "changed_share": f.sent.extra.get("changed_share"),
            "bits_payload": f.payload_bytes * 8, "bits_wire": sum(len(p) for p in f.packets) * 8, "frame": int(f.sent.index)}


def latency_percentiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    p50, p95 = np.percentile(values, [50, 95])
    return float(p50), float(p95)


def run_scenario(scenario: Scenario, setup: Setup, writer: ResultsWriter, image_dir: Path | None,
                 seed: int, progress=None, points: list[tuple[float, int]] | None = None,
                 include_lossless: bool = True) -> dict:
    """Runs the sweep (or only the (loss rate, seed index) `points` of it); returns run-level
    statistics and timings."""
    timings = RunTimings()
    level = setup.level
    sender = stream_sender(setup, scenario)
    pictures = Pictures(lambda: frames(scenario), sender.codec, timings)
    encoded = encode_frames(sender, frames(scenario), timings, pictures,
                            (lambda i, n: progress("encode", i, n)) if progress else None, setup.metrics,
                            scenario.source.count)
    rates, seeds = scenario.loss_rates(), scenario.sweep.seeds
    base = {"scenario": scenario.name, "codebook": level}
    if image_dir is not None:
        image_dir.mkdir(parents=True, exist_ok=True)
        for i, (f, rgb, lossless) in zip(range(EXAMPLE_FRAMES), pictures.walk(encoded)):
            save_rgb(rgb, image_dir / f"f{i}-original.png", FAST_PNG)
            save_rgb(lossless, image_dir / f"f{i}-lossless.png", FAST_PNG)
    for f in encoded if include_lossless else []:
        pixels = f.pixels
        writer.add({**base, "image": f.name, "seed": seed, "loss_rate_target": 0.0,
                    "loss_rate_packets": 0.0, "loss_rate_tokens": 0.0, "method": "lossless",
                    "bpp_payload": f.payload_bytes * 8 / pixels,
                    "bpp_wire": sum(len(p) for p in f.packets) * 8 / pixels,
                    **f.lossless_quality, "latency_ms_p50": None, "latency_ms_p95": None,
                    "packets": len(f.packets), **colour_fields(f, f.chroma is not None),
                    **coarse_fields(f, scenario.packets.coarse), **temporal_fields(f, scenario.codec.temporal is not None)})
    runs = []
    points = [(rate, s) for rate in rates for s in range(seeds)] if points is None else points
    total, done = len(points), 0
    for rate, s in points:
        run_seed = element_seed(seed, s)
        t0 = time.perf_counter()
        outcome = simulate_channel(scenario.channel, [f.packets for f in encoded],
                                   scenario.source.fps, scenario.receiver.deadline,
                                   rate if scenario.sweep.loss_rate else None, run_seed,
                                   scenario.path.parent if scenario.path else None)
        timings.simulate_s += time.perf_counter() - t0
        stats = outcome.summary()
        runs.append({"loss_rate_target": rate, "seed": seed + s, **stats})
        receiver = StreamReceiver(sender.codec, sender.framing)
        _score_frames(setup, receiver, scenario.packets.coarse, pictures.walk(encoded), outcome, base, rate,
                      seed + s, writer, timings, image_dir if s == 0 else None)
        done += 1
        if progress:
            progress("simulate", done, total)
    return {"runs": runs, "timings": timings.as_dict(),
            "frames": len(encoded), "frame_size": list(encoded[0].grid.image_size),
            "packets_per_frame": float(np.mean([len(f.packets) for f in encoded])),
            "colour_bytes_per_frame": float(np.mean([f.colour_bytes for f in encoded])),
            "coarse_bytes_per_frame": float(np.mean([f.coarse_bytes for f in encoded])),
            "packet_overhead_bits": (sender.codec.unit_header + sender.framing.bytes_per_unit) * 8,
            "packet_header": scenario.packets.header}


def _score_frames(setup: Setup, receiver: StreamReceiver, coarse: int, encoded, outcome: ChannelOutcome,
                  base: dict, rate: float, seed: int, writer, timings: RunTimings, image_dir: Path | None):
    """Assemble what arrived of each frame, recover, decode and score it with every method. The
    command-line metrics of a decode run as processes while the next frames decode; the records
    are written, in the same order, once the point's frames are done."""
    vq = receiver.codec
    temporal = vq.temporal is not None
    rows = []  # (record without its scores, PSNR/MS-SSIM, pending further metrics)
    for i, ((f, rgb, lossless), fo) in enumerate(zip(encoded, outcome.frames)):
        receiver.expect(i, vq.signal(f.sent))
        for data in fo.on_time:
            receiver.put_wire(data)
        arrival = receiver.take(i)
        lossy, chroma = arrival.lossy, arrival.chroma
        p50, p95 = latency_percentiles(fo.latencies_ms)
        pixels = f.pixels
        common = {**base, "image": f.name, "seed": seed, "loss_rate_target": rate,
                  "loss_rate_packets": fo.lost / fo.sent, "loss_rate_tokens": lossy.loss_rate,
                  "bpp_payload": f.payload_bytes * 8 / pixels,
                  "bpp_wire": sum(len(p) for p in f.packets) * 8 / pixels,
                  "latency_ms_p50": p50, "latency_ms_p95": p95,
                  "late_share": fo.late / fo.lost if fo.lost else 0.0, "frame": i,
                  **colour_fields(f, chroma is not None), **coarse_fields(f, coarse, lossy)}
        lost = lossy.missing
        if temporal:
            common.update(**temporal_fields(f, temporal), tokens_lost=int(lost.sum()), shown=True)
        if image_dir is not None and i < EXAMPLE_FRAMES:
            save_rgb(lost_token_overlay(lossless, lost), image_dir / f"f{i}-r{rate:g}-mask.png", FAST_PNG)
        # one decode per distinct grid: methods that fill alike (none and neighbour on a frame
        # that lost every token), or a fill that restores the sent grid, share it
        decodes = {f.grid.indices.tobytes(): (lossless, f.lossless_quality, None)}
        for name, method in setup.recoveries.items():
            history = receiver.history(name)
            stale = vq.stale(arrival, history)
            guessed = lost if stale is None else lost | stale
            if not guessed.any() and arrival.changed is None:
                decoded, q, pending, acc = lossless, f.lossless_quality, None, None
                filled = f.grid.indices
            else:
                t0 = time.perf_counter()
                filled = vq.recover(arrival, method, history)
                timings.recover_s += time.perf_counter() - t0
                concealed = method.conceal and lost.any()
                # a frame that lost every copy of its colour decodes without it
                key = (filled.tobytes() + (lost.tobytes() if concealed else b"")
                       + (b"" if chroma is not None or f.chroma is None else b"no colour"))
                if key not in decodes:
                    t0 = time.perf_counter()
                    decoded = vq.render(arrival, filled, concealed)
                    timings.decode_s += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    decodes[key] = (decoded, quality(rgb, decoded, ssim=temporal),
                                    setup.metrics.start(rgb, decoded) if setup.metrics else None)
                    timings.metrics_s += time.perf_counter() - t0
                decoded, q, pending = decodes[key]
                acc = float((filled[guessed] == f.grid.indices[guessed]).mean()) if guessed.any() else None
            receiver.shown(name, TokenGrid(filled, f.grid.level, f.grid.image_size), decoded,
                           guessed if guessed.any() else None)
            split = lost_split(rgb, decoded, lost, vq.image_codec.factor) if lost.any() else {}
            extra = {"tokens_stale": int(stale.sum()) if stale is not None else 0} if temporal else {}
            rows.append(({**common, "method": name, "token_accuracy": acc,
                          "psnr_drop": f.lossless_quality["psnr"] - q["psnr"], **extra, **split}, q, pending))
            if image_dir is not None and i < EXAMPLE_FRAMES:
                save_rgb(decoded, image_dir / f"f{i}-r{rate:g}-{name}.png", FAST_PNG)
    if temporal:
        frames_to_repair([record for record, _, _ in rows])
    t0 = time.perf_counter()
    for record, q, pending in rows:  # a decode shared by several methods is waited for once
        writer.add({**record, **q, **(pending.result() if pending is not None else {})})
    timings.metrics_s += time.perf_counter() - t0
