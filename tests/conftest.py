"""Shared fixtures: a tiny randomly initialised codec (weights written to a temp folder), so the
tests exercise every code path in seconds without the shipped weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.checkpoint import save_tokenizer
from codec.images import default_data_root
from codec.levels import build_levels, save_levels
from codec.tokenizer import TokenizerConfig, VQModel

TINY = TokenizerConfig(ch=32, ch_mult=(1, 1, 1, 1, 1), num_res_blocks=1, z_channels=32,
                       embed_dim=8, n_embed=64, resolution=64)


def tiny_model(seed: int = 0, cfg: TokenizerConfig = TINY) -> VQModel:
    torch.manual_seed(seed)
    model = VQModel(cfg)
    model.quantize.embedding.weight.data.normal_(0, 1)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    model = tiny_model()
    save_tokenizer(model, folder / "tokenizer.safetensors", {"note": "random test weights"})
    latents = torch.randn(4000, TINY.embed_dim, generator=torch.Generator().manual_seed(1))
    levels = build_levels(model.quantize.embedding.weight.data, latents, (16, 64), 3, 0, log=lambda s: None)
    save_levels(levels, folder / "levels.safetensors")
    return folder


@pytest.fixture(scope="session")
def tiny_codec(tiny_weights):
    from codec.zoo import load_codec

    return load_codec(tiny_weights, precision="fp32")


@pytest.fixture
def sample_rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:72, 0:100]
    img = np.stack([(x * 2) % 256, (y * 3) % 256, ((x + y) * 2) % 256], -1)
    return (img + rng.integers(0, 20, img.shape)).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if not (root / "bsds500").is_dir():
        pytest.skip(f"training/evaluation images not found at {root} (set SIMNET_DATA)")
    return root
