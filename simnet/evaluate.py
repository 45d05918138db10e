"""`simnet eval`: codec and recovery quality on a folder of images, per image and mean.

For each image: the VQ codec at the chosen level (lossless decode, and each recovery method at
each token loss rate and seed), and the classical baselines measured by the same metric code in
the same run: JPEG and WebP at their lowest qualities, and downscale + WebP + upscale at the VQ
codec's rate on that image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec.image_codec import ImageCodec
from codec.images import list_images, load_rgb
from codec.metrics import ms_ssim, psnr
from codec.packets import DEFAULT_MTU
from codec.tokens import LossyTokenGrid, TokenGrid

from . import classical


def quality(reference: np.ndarray, decoded: np.ndarray, extra=None) -> dict:
    """PSNR (RGB, 0-255) and MS-SSIM of two HxWx3 uint8 images, and whatever `extra` (e.g. the
    optional pyiqa metrics) adds."""
    x = torch.from_numpy(reference.copy()).permute(2, 0, 1)[None].float() / 255
    y = torch.from_numpy(decoded.copy()).permute(2, 0, 1)[None].float() / 255
    scores = {"psnr": float(psnr(x, y)[0]), "ms_ssim": float(ms_ssim(x, y)[0])}
    return {**scores, **extra(reference, decoded)} if extra is not None else scores


def random_token_mask(shape: tuple[int, int], rate: float, seed: int) -> np.ndarray:
    """Exactly round(rate * n) positions lost, chosen uniformly with `seed`."""
    n = shape[0] * shape[1]
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=int(round(rate * n)), replace=False)] = True
    return mask.reshape(shape)


def packet_loss_mask(codec: ImageCodec, grid: TokenGrid, rate: float, seed: int, mtu: int,
                     max_tokens: int | None, burst: float) -> tuple[np.ndarray, float]:
    """Tokens lost when the grid's packets cross a Gilbert-Elliott channel of this mean loss rate
    and mean burst length (burst 1 = independent losses). Returns (mask, packet loss rate)."""
    from simnet.loss_models import GilbertElliott

    packets = codec.packetize(grid, mtu=mtu, max_tokens=max_tokens, interleave="random", seed=seed)
    model = GilbertElliott.from_rate_and_burst(rate, burst, seed=seed) if rate > 0 else None
    lost = np.array([model.drop() if model else False for _ in packets])
    n = grid.indices.size
    from codec.packets import interleave_order

    order = interleave_order(n, packets[0].interleave, packets[0].seed)
    flat = np.zeros(n, dtype=bool)
    for p, gone in zip(packets, lost):
        if gone:
            flat[order[p.start: p.start + p.tokens]] = True
    return flat.reshape(grid.shape), float(lost.mean())


@dataclass
class EvalOptions:
    level: int = 1024
    loss_rates: list[float] = field(default_factory=lambda: [0.0])
    methods: list[str] = field(default_factory=lambda: ["none", "neighbour"])
    seeds: int = 1
    seed: int = 0
    burst: float | None = None  # None: random token loss; a number: packet loss with that burst length
    mtu: int = DEFAULT_MTU
    max_tokens: int | None = 64
    baselines: bool = True
    scenario: str = "eval"
    rate_lambda: float | None = None  # None: the level's shipped value
    iqa: object | None = None  # optional extra metrics: (reference, decoded) -> {field: value}


def evaluate_image(codec: ImageCodec, name: str, rgb: np.ndarray, opts: EvalOptions,
                   recoveries: dict, image_index: int) -> list[dict]:
    pixels = rgb.shape[0] * rgb.shape[1]
    records = []
    base = {"scenario": opts.scenario, "image": name, "codebook": opts.level,
            "latency_ms_p50": None, "latency_ms_p95": None}
    grid = codec.encode(rgb, opts.level, opts.rate_lambda)
    data = codec.to_bytes(grid)
    payload_bits = (len(data) - 18) * 8  # the 14-byte header and 4-byte CRC are not payload
    prior = codec.prior(opts.level)
    xent = prior.information_bits(grid.indices.ravel())
    bpp_payload, bpp_wire = payload_bits / pixels, len(data) * 8 / pixels
    lossless = codec.decode(grid)
    ceiling = quality(rgb, lossless, opts.iqa)
    records.append({**base, "seed": opts.seed, "loss_rate_target": 0.0, "loss_rate_packets": 0.0,
                    "loss_rate_tokens": 0.0, "method": "lossless", "bpp_payload": bpp_payload,
                    "bpp_wire": bpp_wire, **ceiling, "bits_over_cross_entropy": payload_bits / xent,
                    "bpp_uniform": np.log2(opts.level) * grid.indices.size / pixels})
    codebook = codec.codebook(opts.level)
    for rate in opts.loss_rates:
        if rate <= 0:
            continue
        for s in range(opts.seeds):
            seed = opts.seed + s
            mask_seed = hash_seed(seed, image_index, rate)
            if opts.burst is None:
                missing, packet_rate = random_token_mask(grid.shape, rate, mask_seed), None
            else:
                missing, packet_rate = packet_loss_mask(codec, grid, rate, mask_seed, opts.mtu,
                                                        opts.max_tokens, opts.burst)
            received = np.where(missing, 0, grid.indices)
            lossy = LossyTokenGrid(TokenGrid(received, grid.level, grid.image_size), missing)
            for method_name, method in recoveries.items():
                filled = method.recover(lossy, codebook)
                decoded = codec.decode(TokenGrid(filled, grid.level, grid.image_size))
                lost = missing.sum()
                accuracy = float((filled[missing] == grid.indices[missing]).mean()) if lost else None
                scores = quality(rgb, decoded, opts.iqa)
                records.append({**base, "seed": seed, "loss_rate_target": rate,
                                "loss_rate_packets": packet_rate,
                                "loss_rate_tokens": float(missing.mean()), "method": method_name,
                                "bpp_payload": bpp_payload, "bpp_wire": bpp_wire,
                                **scores, "token_accuracy": accuracy,
                                "psnr_drop": ceiling["psnr"] - scores["psnr"]})
    if opts.baselines:
        for method, (decoded, nbytes) in (("jpeg-q1", classical.jpeg(rgb, 1)),
                                          ("webp-q0", classical.webp(rgb, 0))):
            records.append({**base, "codebook": None, "seed": opts.seed, "loss_rate_target": 0.0,
                            "loss_rate_packets": 0.0, "loss_rate_tokens": 0.0, "method": method,
                            "bpp_payload": nbytes * 8 / pixels, "bpp_wire": nbytes * 8 / pixels,
                            **quality(rgb, decoded, opts.iqa)})
        for factor in classical.DOWNSCALE_FACTORS:
            decoded, nbytes, q = classical.downscaled_webp_at_rate(rgb, factor, len(data))
            records.append({**base, "codebook": None, "seed": opts.seed, "loss_rate_target": 0.0,
                            "loss_rate_packets": 0.0, "loss_rate_tokens": 0.0,
                            "method": f"down{factor}-webp", "webp_quality": q,
                            "bpp_payload": nbytes * 8 / pixels, "bpp_wire": nbytes * 8 / pixels,
                            **quality(rgb, decoded, opts.iqa)})
    return records


def hash_seed(*parts) -> int:
    """A stable 32-bit seed from (seed, image index, rate): Python's hash() is salted per process."""
    import zlib

    return zlib.crc32(repr(parts).encode())


def evaluate_folder(codec: ImageCodec, folder: Path, opts: EvalOptions, writer, progress=None,
                    limit: int | None = None) -> None:
    from recovery import get_method

    recoveries = {name: get_method(name) for name in opts.methods} if any(
        r > 0 for r in opts.loss_rates) else {}
    files = list_images(folder)[:limit]
    for i, path in enumerate(files):
        rgb = load_rgb(path)
        for rec in evaluate_image(codec, path.name, rgb, opts, recoveries, i):
            writer.add(rec)
        if progress:
            progress(i + 1, len(files), path.name)
