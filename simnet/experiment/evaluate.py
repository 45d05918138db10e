"""`simnet eval`: codec and recovery quality on a folder of images, per image and mean.

For each image: the VQ codec at the chosen level (lossless decode, and each recovery method at
each token loss rate and seed), and the classical baselines measured by the same metric code in
the same run: JPEG and WebP at their lowest qualities, and downscale + WebP + upscale at the VQ
codec's rate on that image. With a colour side channel (`chroma_block`), the VQ file carries it
and the baselines match the larger file; random token loss leaves it whole (it models lost
tokens), whole-packet loss (`burst`) sends it in two of the packets, which may both be lost.
With a coarse layer (`coarse`), its bytes count in the rate and the baselines' budget; random
token loss loses each token's cell independently at the same rate, whole-packet loss sends the
cells in packets of their own after the tokens', through the same channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codec import classical, colour
from codec.bitstream import CRC_BYTES, HEADER_BYTES
from codec.colour import ColourPlane
from codec.image_codec import ImageCodec
from codec.images import list_images, load_rgb
from codec.metrics import lost_split, quality
from codec.packets import DEFAULT_MTU
from codec.tokens import CoarseCells, LossyTokenGrid, TokenGrid, random_token_mask

from ..network.loss_models import GilbertElliott
from ..seeds import element_seed
from ..stream import CoarseLayer, StreamReceiver, StreamSender
from ..stream.vq import TokenArrival, VQStreamCodec
from .setup import Setup


def packet_loss_mask(codec: ImageCodec, grid: TokenGrid, rate: float, seed: int, mtu: int,
                     max_tokens: int | None, burst: float, chroma: ColourPlane | None = None,
                     colour_copies: int = 2, coarse: int = 0) -> tuple[np.ndarray, float, bool, np.ndarray | None]:
    """Tokens lost when the grid's packets (and its coarse layer's, after them) cross a
    Gilbert-Elliott channel of this mean loss rate and mean burst length (burst 1 = independent
    losses), as the stream's receiver sees them. Returns (mask, packet loss rate, whether a
    copy of the colour section arrived, the coarse cells that arrived (-1: lost) or None)."""
    vq = VQStreamCodec(codec, level=grid.level, mtu=mtu, max_tokens=max_tokens, seed=seed,
                       colour_copies=colour_copies)
    frame = StreamSender(vq, [CoarseLayer(coarse)] if coarse else []).encode(0, None, grid=grid, plane=chroma)
    model = GilbertElliott.from_rate_and_burst(rate, burst, seed=seed) if rate > 0 else None
    lost = np.array([model.drop() if model else False for _ in frame.units])
    receiver = StreamReceiver(vq)
    receiver.expect(0, vq.signal(frame))
    for i, (unit, gone) in enumerate(zip(frame.units, lost)):
        if not gone:
            receiver.put(0, i, len(frame.units), unit)
    arrival = receiver.take(0)
    cells = arrival.lossy.cells.indices if coarse else None
    return arrival.lost, float(lost.mean()), arrival.chroma is not None, cells


@dataclass
class EvalOptions:
    loss_rates: list[float] = field(default_factory=lambda: [0.0])
    seeds: int = 1
    seed: int = 0
    burst: float | None = None  # None: random token loss; a number: packet loss with that burst length
    mtu: int = DEFAULT_MTU
    max_tokens: int | None = 64
    baselines: bool = True
    scenario: str = "eval"
    rate_lambda: float | None = None  # None: the level's shipped value
    extra: object | None = None  # further metrics: (reference, decoded) -> {field: value}
    chroma_block: int | None = None  # the colour side channel's block side in pixels; None: off
    chroma_step: int = 2
    luma: bool = False  # the side channel's blocks carry luma too
    coarse: int = 0  # the coarse layer's level (each token's cell there sent again); 0: none


def _lost_tokens(setup: Setup, grid: TokenGrid, opts: EvalOptions, rate: float, seed: int,
                 chroma: ColourPlane | None) -> tuple[np.ndarray, float | None, bool, CoarseCells | None]:
    """(lost positions, packet loss rate or None, whether the colour section, if any, arrived,
    the coarse cells that arrived where the stream sends a coarse layer)."""
    cells = None
    if opts.burst is None:
        missing, packet_rate, colour_arrived = random_token_mask(grid.shape, rate, seed), None, True
        if opts.coarse:
            gone = random_token_mask(grid.shape, rate, element_seed(seed, "coarse"))
            cells = np.where(gone, -1, setup.codec.cells(grid, opts.coarse).indices)
    else:
        missing, packet_rate, colour_arrived, cells = packet_loss_mask(
            setup.codec, grid, rate, seed, opts.mtu, opts.max_tokens, opts.burst, chroma, coarse=opts.coarse)
    if cells is not None:
        cells = CoarseCells(opts.coarse, cells, setup.codec.cell_map(opts.coarse))
    return missing, packet_rate, colour_arrived, cells


def _recovered_records(setup: Setup, rgb: np.ndarray, grid: TokenGrid, opts: EvalOptions,
                       image_index: int, base: dict, ceiling: dict, chroma) -> list[dict]:
    """Every recovery method at every loss rate and seed."""
    codec = setup.codec
    vq = VQStreamCodec(codec, level=grid.level)
    records = []
    for rate in (r for r in opts.loss_rates if r > 0):
        for s in range(opts.seeds):
            seed = opts.seed + s
            missing, packet_rate, colour_arrived, cells = _lost_tokens(
                setup, grid, opts, rate, element_seed(seed, image_index, rate), chroma)
            got_chroma = chroma if colour_arrived else None
            received = np.where(missing, 0, grid.indices)
            lossy = LossyTokenGrid(TokenGrid(received, grid.level, grid.image_size), missing, cells)
            known = ({"cells_known": float(cells.known[missing].mean()) if missing.any() else None}
                     if cells is not None else {})
            arrival = TokenArrival(0, lossy, got_chroma)
            for method_name, method in setup.recoveries.items():
                filled = vq.recover(arrival, method)
                decoded = vq.render(arrival, filled, method.conceal)
                accuracy = float((filled[missing] == grid.indices[missing]).mean()) if missing.any() else None
                scores = quality(rgb, decoded, opts.extra)
                split = lost_split(rgb, decoded, missing, codec.factor)
                records.append({**base, "seed": seed, "loss_rate_target": rate,
                                "loss_rate_packets": packet_rate,
                                "loss_rate_tokens": float(missing.mean()), "method": method_name,
                                **({"colour_received": colour_arrived} if chroma else {}), **known,
                                **scores, **split, "token_accuracy": accuracy,
                                "psnr_drop": ceiling["psnr"] - scores["psnr"]})
    return records


def baseline_records(rgb: np.ndarray, vq_bytes: int, opts: EvalOptions, base: dict) -> list[dict]:
    """The classical codecs on the same image, scored by the same metric code: JPEG and WebP at
    their lowest qualities, each downscaled WebP and AVIF (full size, downscaled by 2 and 3) at the
    VQ file's size."""
    pixels = rgb.shape[0] * rgb.shape[1]
    common = {**base, "codebook": None, "seed": opts.seed, "loss_rate_target": 0.0,
              "loss_rate_packets": 0.0, "loss_rate_tokens": 0.0}
    coded = [("jpeg-q1", *classical.jpeg(rgb, 1), {}), ("webp-q0", *classical.webp(rgb, 0), {})]
    for factor in classical.DOWNSCALE_FACTORS:
        decoded, nbytes, q = classical.at_rate(rgb, "WEBP", factor, vq_bytes)
        coded.append((f"down{factor}-webp", decoded, nbytes, {"webp_quality": q}))
    for factor in classical.AVIF_FACTORS:
        decoded, nbytes, q = classical.at_rate(rgb, "AVIF", factor, vq_bytes)
        name = "avif" if factor == 1 else f"down{factor}-avif"
        coded.append((name, decoded, nbytes, {"avif_quality": q, "fits_budget": nbytes <= vq_bytes}))
    return [{**common, "method": method, **extra, "bpp_payload": nbytes * 8 / pixels,
             "bpp_wire": nbytes * 8 / pixels, **quality(rgb, decoded, opts.extra)}
            for method, decoded, nbytes, extra in coded]


def evaluate_image(setup: Setup, name: str, rgb: np.ndarray, opts: EvalOptions, image_index: int) -> list[dict]:
    """The records of one image: the lossless decode, each recovery at each loss, the baselines."""
    codec, level = setup.codec, setup.level
    pixels = rgb.shape[0] * rgb.shape[1]
    grid = codec.encode(rgb, level, opts.rate_lambda)
    chroma = (colour.measure(rgb, opts.chroma_block, opts.chroma_step, opts.luma)
              if opts.chroma_block else None)
    data = codec.to_bytes(grid, chroma)
    section = colour.to_bytes(chroma) if chroma else b""
    colour_bytes = len(section)
    # the coarse layer as it would travel (its packets' payloads), counted in the rate
    coarse_bytes = (StreamSender(VQStreamCodec(codec, level=level, mtu=opts.mtu, max_tokens=opts.max_tokens, seed=0),
                                 [CoarseLayer(opts.coarse)]).encode(0, None, grid=grid).extra["coarse_bytes"]
                    if opts.coarse else 0)
    payload_bits = (len(data) - HEADER_BYTES - CRC_BYTES + coarse_bytes) * 8  # colour and coarse layer included
    xent = codec.prior(level).information_bits(grid.indices.ravel())
    base = {"scenario": opts.scenario, "image": name, "codebook": level,
            "latency_ms_p50": None, "latency_ms_p95": None}
    if chroma:
        base.update(chroma_block=chroma.block, chroma_step=chroma.step, chroma_luma=chroma.luma is not None,
                    bits_colour=colour_bytes * 8)
    if opts.coarse:
        base.update(coarse_level=opts.coarse, bits_coarse=coarse_bytes * 8)
    ceiling = quality(rgb, codec.decode(grid, chroma=chroma), opts.extra)
    rates = {"bpp_payload": payload_bits / pixels, "bpp_wire": (len(data) + coarse_bytes) * 8 / pixels}
    records = [{**base, "seed": opts.seed, "loss_rate_target": 0.0, "loss_rate_packets": 0.0,
                "loss_rate_tokens": 0.0, "method": "lossless", **rates, **ceiling,
                "bits_over_cross_entropy": (payload_bits - (colour_bytes + coarse_bytes) * 8) / xent,
                "bpp_uniform": np.log2(level) * grid.indices.size / pixels}]
    records += _recovered_records(setup, rgb, grid, opts, image_index, {**base, **rates}, ceiling, chroma)
    if opts.baselines:
        plain = {k: v for k, v in base.items()
                 if k not in ("chroma_block", "chroma_step", "chroma_luma", "bits_colour", "coarse_level", "bits_coarse")}
        records += baseline_records(rgb, len(data) + coarse_bytes, opts, plain)
    return records


def evaluate_folder(setup: Setup, folder: Path, opts: EvalOptions, writer, progress=None,
                    limit: int | None = None) -> None:
    files = list_images(folder)[:limit]
    for i, path in enumerate(files):
        for rec in evaluate_image(setup, path.name, load_rgb(path), opts, i):
            writer.add(rec)
        if progress:
            progress(i + 1, len(files), path.name)
