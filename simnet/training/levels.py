"""Building the codebook levels and priors from a trained tokenizer (`simnet train levels`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec.checkpoint import load_tokenizer
from codec.hardware import Compute, resolve
from codec.safe_weights import file_checksum
from codec.images import load_rgb, to_tensor, training_images
from codec.levels import (build_levels, fit_entropy_constrained, latent_mse, rate_of, save_levels,
                     tune_rate_lambda)
from codec.tokenizer import VQModel, pad_to_multiple

MAX_SIDE = 768  # large training photos are reduced to the scale of the evaluation photographs


def training_rgb(max_side: int = MAX_SIDE):
    for path in training_images():
        rgb = load_rgb(path)
        if max(rgb.shape[:2]) > max_side:
            s = max_side / max(rgb.shape[:2])
            rgb = np.asarray(Image.fromarray(rgb).resize(
                (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), Image.LANCZOS))
        yield path, rgb


@torch.no_grad()
def image_latents(model: VQModel, rgb: np.ndarray, compute: Compute | None = None) -> torch.Tensor:
    """HxWx3 uint8 -> (D, h, w) float32 latent on the CPU; `model` on `compute`'s device."""
    compute = compute or resolve("cpu")
    x = pad_to_multiple(to_tensor(rgb), model.config.factor).to(compute.device)
    with compute.autocast():
        z = model.encode_latent(x.contiguous(memory_format=torch.channels_last))
    return z[0].float().cpu()


def latents_cache(tokenizer_checksum: str, compute: Compute, folder: Path = Path("runs/cache"),
                  kind: str = "latents") -> Path:
    """Where the training latents of a tokenizer, computed at a precision, are kept."""
    suffix = "" if compute.precision == "bf16" else f"-{compute.precision}"  # bf16: the older name
    return folder / f"{kind}-{tokenizer_checksum[:12]}{suffix}.safetensors"


def training_latents(model: VQModel, cache: Path | None = None, log=print,
                     compute: Compute | None = None) -> list[torch.Tensor]:
    """Latent grids of every training image, cached (safetensors) since encoding takes minutes."""
    if cache is not None and cache.exists():
        from safetensors.torch import load_file

        stored = load_file(str(cache))
        return [stored[k] for k in sorted(stored, key=int)]
    model.eval().to(memory_format=torch.channels_last)
    grids = []
    for i, (path, rgb) in enumerate(training_rgb()):
        grids.append(image_latents(model, rgb, compute))
        if (i + 1) % 100 == 0:
            log(f"encoded {i + 1} training images")
    if cache is not None:
        from safetensors.torch import save_file

        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({str(i): g.contiguous() for i, g in enumerate(grids)}, str(cache))
    return grids


def make_levels(tokenizer_path: Path, out: Path, sizes, refine: int, seed: int, log=print,
                target_bits: dict[int, float] | None = None, refine_base: bool = False,
                device: str = "auto", precision: str = "auto") -> None:
    """Build the levels from the training split; `target_bits` {K: bits per token} sets each
    level's rate_lambda so the validation split (BSDS500 val, never Kodak) costs that much."""
    for k in target_bits or {}:
        if k not in sizes:
            raise ValueError(f"target bits given for level {k}, which is not being built")
    model, _ = load_tokenizer(tokenizer_path)
    compute = resolve(device, precision)
    log(f"compute: {compute.summary()}")
    model.to(compute.device)
    cache = latents_cache(file_checksum(tokenizer_path), compute)
    grids = training_latents(model, cache, log, compute)
    latents = torch.cat([g.flatten(1).t() for g in grids])
    log(f"{latents.shape[0]} training latents of dimension {latents.shape[1]}")
    levels = build_levels(model.quantize.embedding.weight.data.cpu(), latents, sizes, refine, seed, log,
                          refine_base)
    tuned = {}
    if target_bits:
        from codec.images import validation_images

        val = torch.cat([image_latents(model, load_rgb(p), compute).flatten(1).t() for p in validation_images()])
        nearest_levels = dict(levels)
        for k, bits in sorted(target_bits.items()):
            levels[k] = tune_rate_lambda(levels[k], latents, val, bits)
        # levels without a target share the rate_lambda of the largest tuned level: one slope of
        # the rate-distortion curve for all of them
        shared = levels[max(target_bits)].rate_lambda
        for k in levels:
            if k not in target_bits and shared > 0:
                levels[k] = fit_entropy_constrained(levels[k], latents, shared)
        for k, level in sorted(levels.items()):
            near = nearest_levels[k]
            tuned[k] = {"rate_lambda": level.rate_lambda, "target_bits": target_bits.get(k),
                        "val_bits_per_token": rate_of(level, val),
                        "val_bits_nearest": rate_of(near, val),
                        "val_latent_mse": latent_mse(level, val), "val_latent_mse_nearest": latent_mse(near, val),
                        "codes_used_on_training": int((level.prior.counts > 0).sum())}
            t = tuned[k]
            log(f"level {k}: rate_lambda {t['rate_lambda']:.4g}: {t['val_bits_per_token']:.3f} bits per "
                f"token on validation, latent MSE {t['val_latent_mse']:.4f} (nearest code: "
                f"{t['val_bits_nearest']:.3f} bits, MSE {t['val_latent_mse_nearest']:.4f}), "
                f"{t['codes_used_on_training']} codes used")
    save_levels(levels, out, {"tokenizer_sha256": file_checksum(tokenizer_path), "refine": refine,
                              "seed": seed, "training_tokens": int(latents.shape[0]), "refine_base": refine_base,
                              "rate_tuning": {str(k): v for k, v in tuned.items()}})
    log(f"wrote {out}")
