"""Token grids for training the recovery transformer: the training split encoded once with the
tokenizer (cached), then quantised at every codebook level. Lives in simnet because it joins the
codec (which makes the grids) and recovery (which learns from them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from codec.image_codec import ImageCodec
from codec.images import load_rgb, validation_images
from simnet.training.levels import image_latents, latents_cache, training_latents, training_rgb

# Each training photo is tokenised four ways: as it is, mirrored, and both shifted by half a
# token (8 px), which moves every token boundary. The transformer sees four times the grids,
# all of them real encoder output rather than edited token grids.
VARIANTS = ("mirror", "shift", "mirror+shift")


def latents_to_grids(codec: ImageCodec, latents: list[torch.Tensor]) -> dict[int, list[np.ndarray]]:
    """Index grids at every level, assigned exactly as the encoder assigns them (rate_lambda)."""
    grids: dict[int, list[np.ndarray]] = {k: [] for k in codec.level_sizes}
    for z in latents:
        d, h, w = z.shape
        flat = z.permute(1, 2, 0).reshape(-1, d)
        for k in codec.level_sizes:
            grids[k].append(codec.level(k).assign(flat).reshape(h, w).numpy())
    return grids


def _variant(rgb: np.ndarray, name: str) -> np.ndarray:
    if "mirror" in name:
        rgb = rgb[:, ::-1]
    if "shift" in name:
        rgb = rgb[8:, 8:]
    return np.ascontiguousarray(rgb)


def augmented_latents(codec: ImageCodec, cache: Path, log=print) -> list[torch.Tensor]:
    if cache.exists():
        from safetensors.torch import load_file

        stored = load_file(str(cache))
        return [stored[k] for k in sorted(stored, key=int)]
    model = codec.model.eval().to(memory_format=torch.channels_last)
    latents = []
    for i, (_, rgb) in enumerate(training_rgb()):
        latents.extend(image_latents(model, _variant(rgb, v), codec.compute) for v in VARIANTS)
        if (i + 1) % 100 == 0:
            log(f"encoded {i + 1} training images x {len(VARIANTS)} variants")
    from safetensors.torch import save_file

    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({str(i): g.contiguous() for i, g in enumerate(latents)}, str(cache))
    return latents


def training_grids(codec: ImageCodec, cache_dir: Path = Path("runs/cache"), log=print):
    # the plain latents share the cache `simnet train levels` fills (keyed by the tokenizer file)
    key, compute = codec.tokenizer_checksum, codec.compute
    latents = training_latents(codec.model, latents_cache(key, compute, cache_dir), log, compute)
    latents += augmented_latents(codec, latents_cache(key, compute, cache_dir, "latents-augmented"), log)
    return latents_to_grids(codec, latents)


def validation_grids(codec: ImageCodec, count: int = 24) -> dict[int, list[np.ndarray]]:
    latents = [codec.latent(load_rgb(p)) for p in validation_images()[:count]]
    return latents_to_grids(codec, latents)
