"""Codec speed and memory: encode and decode time of a 768x512 image at both precisions (bf16
against fp32, and what `auto` picks on this machine), entropy coding time as a share of the
tokenizer's time (measured in the same run), and peak memory (RSS) of encoding and decoding a
2048x2048 image in a fresh process at each precision (limit: 3 GB). Every figure comes with the
CPU (or GPU) it was measured on.

    python benchmarks/codec_speed.py [--weights DIR] [--repeat R] [--device auto|cpu|cuda] [--seams]

--seams also decodes the 2048x2048 image without tiles and reports the PSNR of the tiled decode
against it (the untiled decode needs more than 3 GB).

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


def load(weights: str | None, precision: str, device: str = "auto"):
    from codec.zoo import load_codec, weights_dir

    folder = Path(weights) if weights else weights_dir()
    if (folder / "tokenizer.safetensors").exists():
        return load_codec(folder, precision=precision, device=device), str(folder)
    from codec.image_codec import ImageCodec
    from codec.levels import build_levels
    from codec.tokenizer import TokenizerConfig, VQModel

    model = VQModel(TokenizerConfig()).eval()
    levels = build_levels(model.quantize.embedding.weight.data, torch.randn(4096, 32), (1024,), 0,
                          log=lambda s: None)
    return (ImageCodec(model, levels, "0" * 64, precision=precision, device=device),
            "random init (no weights found)")


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


def peak_memory_child(weights: str | None, size: int, precision: str, device: str, seams: bool) -> None:
    from codec.hardware import tune_allocator

    tune_allocator()  # as the simnet command does
    codec, _ = load(weights, precision, device)
    rgb = test_image(size, size)
    grid = codec.encode(rgb, 1024)
    decoded = codec.decode(grid)
    # the high-water mark before any untiled decode below
    out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
           "tiled": codec._tiled(*grid.shape)}
    if seams:
        from codec.metrics import quality

        codec.max_tile_tokens = 10**9
        whole = codec.decode(grid)
        out["tiled_vs_untiled_psnr"] = round(quality(whole, decoded)["psnr"], 2)
        out["tiled_vs_original"] = {k: round(v, 4) for k, v in quality(rgb, decoded).items()}
        out["untiled_vs_original"] = {k: round(v, 4) for k, v in quality(rgb, whole).items()}
    print(json.dumps(out))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=2048, help="side of the peak-memory image")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seams", action="store_true", help="also compare the tiled decode with the untiled one")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return peak_memory_child(args.weights, args.size, args.child, args.device, args.seams)
    from codec.hardware import resolve, tune_allocator

    tune_allocator()
    auto = resolve(args.device, "auto")
    result = {"compute": auto.describe(), "auto_precision": auto.precision,
              "torch_threads": torch.get_num_threads()}
    print(f"measuring on {auto.summary()}", file=sys.stderr)
    rgb = test_image(512, 768)
    codecs = {}
    for precision in ("bf16", "fp32"):
        codecs[precision], source = load(args.weights, precision, args.device)
        result["weights"] = source
        result[f"768x512_{precision}"] = time_codec(codecs[precision], rgb, args.repeat)
    bf16, fp32 = result["768x512_bf16"], result["768x512_fp32"]
    result["bf16_speedup_over_fp32"] = round((fp32["encode_s"] + fp32["decode_s"]) / (bf16["encode_s"] + bf16["decode_s"]), 2)
    chosen = result[f"768x512_{auto.precision}"]
    result["auto_decode_speedup_over_bf16"] = round(bf16["decode_s"] / chosen["decode_s"], 2)
    # the decoder's 2x upsamplings as stride-2 transposed convolutions (what fp32 decodes with, and
    # bf16 where the CPU has it natively) against taming's nearest-neighbour upsampling + 3x3
    # convolution, same weights, same run
    from codec.tokenizer import Upsample, transposed_fast_under_autocast

    device_type = codecs["fp32"].device
    forms = ["fp32"] + (["bf16"] if transposed_fast_under_autocast(device_type) else [])
    for precision in forms:
        Upsample.transposed_at_inference = False
        taming = time_codec(codecs[precision], rgb, args.repeat)
        Upsample.transposed_at_inference = True
        result[f"768x512_{precision}_taming_upsampling"] = taming
        result[f"transposed_upsampling_decode_speedup_{precision}"] = round(
            taming["decode_s"] / result[f"768x512_{precision}"]["decode_s"], 2)
    if "bf16" not in forms:
        result["transposed_upsampling_bf16"] = "not used here: bf16 keeps taming's form on this device"
    for precision in ("bf16", "fp32"):
        cmd = [sys.executable, __file__, "--child", precision, "--size", str(args.size), "--device", args.device]
        cmd += (["--weights", args.weights] if args.weights else []) + (["--seams"] if args.seams else [])
        child = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        child["peak_rss_GB"] = round(child.pop("peak_rss_bytes") / 1e9, 3)
        child["under_3GB"] = child["peak_rss_GB"] < 3
        result[f"{args.size}x{args.size}_{precision}"] = child
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
