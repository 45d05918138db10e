"""Token grids for training the recovery transformer: the training split encoded once with the
tokenizer (cached), then quantised at every codebook level. Lives in simnet because it joins the
codec (which makes the grids) and recovery (which learns from them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from codec.image_codec import ImageCodec
from codec.images import load_rgb, validation_images
from codec.levels import nearest
from codec.train_levels import training_latents


def latents_to_grids(codec: ImageCodec, latents: list[torch.Tensor]) -> dict[int, list[np.ndarray]]:
    grids: dict[int, list[np.ndarray]] = {k: [] for k in codec.level_sizes}
    for z in latents:
        d, h, w = z.shape
        flat = z.permute(1, 2, 0).reshape(-1, d)
        for k in codec.level_sizes:
            grids[k].append(nearest(flat, codec.codebook(k)).reshape(h, w).numpy())
    return grids


def training_grids(codec: ImageCodec, cache_dir: Path = Path("runs/cache"), log=print):
    # the same cache `simnet train levels` fills: keyed by the tokenizer file's checksum
    cache = cache_dir / f"latents-{codec.tokenizer_checksum[:12]}.safetensors"
    latents = training_latents(codec.model, cache, log)
    return latents_to_grids(codec, latents)


def validation_grids(codec: ImageCodec, count: int = 24) -> dict[int, list[np.ndarray]]:
    latents = [codec.latent(load_rgb(p)) for p in validation_images()[:count]]
    return latents_to_grids(codec, latents)
