"""Recovery speed as ratios measured in the same run: the transformer's 8-step iterative
inpainting of a 768x512 image's 1536 tokens against one tokenizer decode of the same image
(aim: at most 1.0x), one-shot against iterative, and the baselines beside them; at bf16 and at
fp32, with the CPU (or GPU) they ran on.

    python benchmarks/recovery_speed.py [--repeat 5] [--loss 0.2] [--weights FILE] [--device auto|cpu|cuda]

Speed does not depend on the weights' values: without shipped transformer weights a randomly
initialised model of the shipped configuration is timed (and the output says so).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from codec.tokens import LossyTokenGrid


def median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def transformer(weights: str | None, precision: str, device: str):
    from recovery import RecoveryError
    from recovery.transformer import MaskedTokenTransformer, TransformerConfig
    from recovery.transformer_recovery import TransformerRecovery

    try:
        return (TransformerRecovery.from_weights(weights, precision=precision, device=device),
                "shipped weights" if weights is None else weights)
    except RecoveryError:
        torch.manual_seed(0)
        return (TransformerRecovery(MaskedTokenTransformer(TransformerConfig()), precision=precision, device=device),
                "random init (no weights found)")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loss", type=float, default=0.2, help="Share of the tokens lost at random.")
    ap.add_argument("--weights", default=None, help="Transformer weights (default: the shipped ones).")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args(argv)

    from codec.hardware import resolve, tune_allocator
    from codec.zoo import load_codec

    tune_allocator()
    auto = resolve(args.device, "auto")
    result = {"compute": auto.describe(), "auto_precision": auto.precision, "image": "768x512",
              "torch_threads": torch.get_num_threads()}
    for precision in ("bf16", "fp32"):
        result[precision] = _measure(load_codec(precision=precision, device=args.device),
                                     *transformer(args.weights, precision, args.device), args)
        result["tokens"], result["lost_tokens"], result["transformer_weights"] = (
            result[precision].pop(k) for k in ("tokens", "lost_tokens", "transformer_weights"))
    result["fp32_vs_bf16_decode"] = round(result["bf16"]["tokenizer_decode_s"] / result["fp32"]["tokenizer_decode_s"], 2)
    print(json.dumps(result, indent=1))
    return result


def _measure(codec, model, source, args) -> dict:
    from codec.images import builtin_images
    from recovery.baselines import NeighbourRecovery
    from recovery.transformer_recovery import TransformerRecovery
    from simnet.experiment.frames import fit_frame

    rgb = fit_frame(builtin_images()[0][1], (512, 768))
    grid = codec.encode(rgb, 1024)
    rng = np.random.default_rng(0)
    missing = rng.random(grid.shape) < args.loss
    lossy = LossyTokenGrid(grid, missing)
    codebook = codec.codebook(1024)
    kw = {"checksum": model.checksum, "precision": model.precision, "device": model.device}
    iterative = TransformerRecovery(model.model, steps=8, **kw)
    one_shot = TransformerRecovery(model.model, steps=1, **kw)
    times = {
        "tokenizer_decode_s": median_seconds(lambda: codec.decode(grid), args.repeat),
        "transformer_8step_s": median_seconds(lambda: iterative.recover(lossy, codebook), args.repeat),
        "transformer_1step_s": median_seconds(lambda: one_shot.recover(lossy, codebook), args.repeat),
        "neighbour_s": median_seconds(lambda: NeighbourRecovery().recover(lossy, codebook), args.repeat),
    }
    return {
        "tokens": int(grid.indices.size), "lost_tokens": int(missing.sum()), "transformer_weights": source,
        **{k: round(v, 4) for k, v in times.items()},
        "ratio_8step_vs_decode": round(times["transformer_8step_s"] / times["tokenizer_decode_s"], 3),
        "ratio_1step_vs_8step": round(times["transformer_1step_s"] / times["transformer_8step_s"], 3),
        "ratio_neighbour_vs_decode": round(times["neighbour_s"] / times["tokenizer_decode_s"], 3),
    }


if __name__ == "__main__":
    main()
