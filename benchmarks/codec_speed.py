"""Codec speed and memory: encode and decode time of a 768x512 image, entropy coding time as a
share of the tokenizer's time (measured in the same run), and peak memory (RSS) of encoding and
decoding a 2048x2048 image in a fresh process (limit: 3 GB).

    python benchmarks/codec_speed.py [--weights DIR] [--repeat R]

Uses the shipped weights; speed does not depend on the weights' values, so without them a
randomly initialised model of the shipped configuration is timed (and the output says so).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def load(weights: str | None, precision: str):
    from codec.zoo import load_codec, weights_dir

    folder = Path(weights) if weights else weights_dir()
    if (folder / "tokenizer.safetensors").exists():
        return load_codec(folder, precision=precision), str(folder)
    from codec.image_codec import ImageCodec
    from codec.levels import build_levels
    from codec.tokenizer import TokenizerConfig, VQModel

    model = VQModel(TokenizerConfig()).eval()
    levels = build_levels(model.quantize.embedding.weight.data, torch.randn(4096, 32), (1024,), 0,
                          log=lambda s: None)
    return ImageCodec(model, levels, "0" * 64, precision=precision), "random init (no weights found)"


def test_image(h: int, w: int) -> np.ndarray:
    from codec.images import builtin_images
    from simnet.experiment.frames import fit_frame

    return fit_frame(builtin_images()[0][1], (h, w))


def time_codec(codec, rgb, repeat: int) -> dict:
    from codec.entropy import decode_symbols, encode_symbols

    grid = codec.encode(rgb, 1024)  # warm-up
    codec.decode(grid)
    prior = codec.prior(1024)
    enc, dec, ent_enc, ent_dec = [], [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        grid = codec.encode(rgb, 1024)
        enc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        codec.decode(grid)
        dec.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        data = encode_symbols(grid.indices.ravel(), prior)
        ent_enc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        decode_symbols(data, grid.indices.size, prior)
        ent_dec.append(time.perf_counter() - t0)
    e, d, ee, ed = (float(np.median(v)) for v in (enc, dec, ent_enc, ent_dec))
    return {"encode_s": round(e, 4), "decode_s": round(d, 4), "entropy_encode_ms": round(ee * 1e3, 3),
            "entropy_decode_ms": round(ed * 1e3, 3),
            "entropy_share_of_tokenizer": round((ee + ed) / (e + d), 5)}


def peak_memory_child(weights: str | None, size: int) -> None:
    codec, _ = load(weights, "bf16")
    rgb = test_image(size, size)
    grid = codec.encode(rgb, 1024)
    codec.decode(grid)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=2048, help="side of the peak-memory image")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return peak_memory_child(args.weights, args.size)
    result = {"torch_threads": torch.get_num_threads()}
    rgb = test_image(512, 768)
    for precision in ("bf16", "fp32"):
        codec, source = load(args.weights, precision)
        result["weights"] = source
        result[f"768x512_{precision}"] = time_codec(codec, rgb, args.repeat)
    result["bf16_speedup_over_fp32"] = round(
        (result["768x512_fp32"]["encode_s"] + result["768x512_fp32"]["decode_s"])
        / (result["768x512_bf16"]["encode_s"] + result["768x512_bf16"]["decode_s"]), 2)
    cmd = [sys.executable, __file__, "--child", "--size", str(args.size)]
    if args.weights:
        cmd += ["--weights", args.weights]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-1]
    result[f"peak_rss_{args.size}x{args.size}_GB"] = round(int(out) / 1e9, 3)
    result["peak_rss_under_3GB"] = int(out) < 3e9
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
