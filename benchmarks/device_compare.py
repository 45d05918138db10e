"""The same work on each device this machine has, as ratios against the CPU in the same run: the
codec's quality on a folder of images (mean PSNR per device: the devices must agree within
0.05 dB), decode time, and training steps per second of the tokenizer and the recovery
transformer. Made to be the one script to run where a GPU is lent (see the README's hardware
section); on a CPU-only machine it measures the CPU and says why CUDA was left out.

    python benchmarks/device_compare.py [--images ../shared/data/kodak] [--limit 24] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def devices() -> tuple[list[str], dict]:
    found, skipped = ["cpu"], {}
    if torch.cuda.is_available():
        found.append("cuda")
    else:
        skipped["cuda"] = "torch sees no CUDA GPU here"
    return found, skipped


def eval_quality(images: Path, limit: int, device: str) -> dict:
    from codec.images import list_images, load_rgb
    from codec.metrics import quality
    from codec.zoo import load_codec

    codec = load_codec(device=device)
    psnrs, decode_s = [], []
    for path in list_images(images)[:limit]:
        rgb = load_rgb(path)
        grid = codec.encode(rgb, 1024)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        decoded = codec.decode(grid)
        decode_s.append(time.perf_counter() - t0)
        psnrs.append(quality(rgb, decoded)["psnr"])
    return {"precision": codec.precision, "images": len(psnrs), "mean_psnr": float(np.mean(psnrs)),
            "median_decode_s": float(np.median(decode_s[1:] or decode_s))}


def steps_per_s(run, steps: int) -> float:
    """Training steps per second without the set-up (data loading, model building): a run of
    `steps` and one of twice as many, each from scratch, and the difference of their times."""
    times = []
    for n in (steps, 2 * steps):
        started = time.perf_counter()
        run(n)
        times.append(time.perf_counter() - started)
    return steps / max(1e-9, times[1] - times[0])


def tokenizer_run(device: str, out: Path):
    import simnet.training.tokenizer as tt

    def run(steps):
        cfg = tt.TrainConfig(out=str(out / f"{steps}"), steps=steps, val_every=10**9, device=device,
                             batch=16, crop=128, val_images=1)
        tt.train(cfg, log=lambda s: None)
    return run


def recovery_run(device: str, out: Path):
    from simnet.training.transformer import RecoveryTrainConfig, train
    from recovery.transformer import TransformerConfig

    rng = np.random.default_rng(0)
    grids = {k: [rng.integers(0, k, (32, 48)) for _ in range(32)] for k in (16, 64, 256, 1024)}
    val = {k: v[:2] for k, v in grids.items()}

    def run(steps):
        cfg = RecoveryTrainConfig(out=str(out / f"{steps}"), steps=steps, val_every=10**9, device=device,
                                  model=TransformerConfig(code_dim=0))
        train(cfg, grids, val, log=lambda s: None)
    return run


def main(argv=None) -> dict:
    from codec.hardware import resolve
    from codec.images import default_data_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=default_data_root() / "kodak")
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--steps", type=int, default=20, help="training steps timed per device")
    ap.add_argument("--out", type=Path, default=Path("runs/device-compare"))
    args = ap.parse_args(argv)
    found, skipped = devices()
    result: dict = {"devices": {d: resolve(d).describe() for d in found}, "left_out": skipped}
    have_data = args.images.is_dir() and (default_data_root() / "bsds500").is_dir()
    for d in found:
        row = {}
        if have_data:
            row["eval"] = eval_quality(args.images, args.limit, d)
            row["tokenizer_steps_per_s"] = steps_per_s(tokenizer_run(d, args.out / f"tok-{d}-{time.time_ns()}"), args.steps)
        row["recovery_steps_per_s"] = steps_per_s(recovery_run(d, args.out / f"rec-{d}-{time.time_ns()}"), args.steps)
        result[d] = row
    if not have_data:
        result["left_out"]["eval and tokenizer training"] = f"no images at {args.images} / training data"
    if "cuda" in result:
        cpu, gpu = result["cpu"], result["cuda"]
        if "eval" in gpu:
            result["psnr_difference_db"] = abs(gpu["eval"]["mean_psnr"] - cpu["eval"]["mean_psnr"])
            result["psnr_agrees_within_0.05_db"] = result["psnr_difference_db"] <= 0.05
            result["decode_speedup"] = cpu["eval"]["median_decode_s"] / gpu["eval"]["median_decode_s"]
            result["tokenizer_training_speedup"] = gpu["tokenizer_steps_per_s"] / cpu["tokenizer_steps_per_s"]
        result["recovery_training_speedup"] = gpu["recovery_steps_per_s"] / cpu["recovery_steps_per_s"]
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
