import numpy as np
import pytest
import torch

from codec.levels import build_levels, load_levels, nearest, save_levels, weighted_kmeans
from codec.metrics import ms_ssim, psnr, ssim


def test_nearest_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    pts, cb = torch.randn(500, 8, generator=g), torch.randn(30, 8, generator=g)
    brute = torch.cdist(pts, cb).argmin(1)
    assert torch.equal(nearest(pts, cb, chunk=64), brute)


def test_weighted_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    pts = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centers])
    found = weighted_kmeans(pts, torch.ones(len(pts)), 4, seed=1)
    dist = torch.cdist(centers, found).min(1).values
    assert dist.max() < 0.2


def test_levels_round_trip_and_priors(tmp_path):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 8, generator=g)
    latents = base[torch.randint(0, 64, (3000,), generator=g)] + 0.05 * torch.randn(3000, 8, generator=g)
    levels = build_levels(base, latents, (16, 64), refine_iterations=3, seed=0, log=lambda s: None)
    assert set(levels) == {16, 64}
    assert levels[16].codebook.shape == (16, 8) and levels[16].from_base.max() < 16
    assert torch.equal(levels[64].codebook, base)
    assert levels[16].prior.entropy_bits() <= 4.0 + 1e-9
    save_levels(levels, tmp_path / "l.safetensors")
    back = load_levels(tmp_path / "l.safetensors")
    assert np.array_equal(back[16].from_base, levels[16].from_base)
    assert np.allclose(back[64].prior.probabilities, levels[64].prior.probabilities)


def test_psnr_known_value():
    x = torch.zeros(1, 3, 8, 8)
    y = torch.full((1, 3, 8, 8), 0.1)
    assert abs(float(psnr(x, y)) - 20.0) < 1e-5


def test_ssim_and_ms_ssim_identity_and_ordering():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 192, 192, generator=g)
    assert abs(float(ssim(x, x)) - 1) < 1e-6
    assert abs(float(ms_ssim(x, x)) - 1) < 1e-6
    slight = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    heavy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert float(ms_ssim(x, heavy)) < float(ms_ssim(x, slight)) < 1
    assert float(ssim(x, heavy)) < float(ssim(x, slight)) < 1


def test_ms_ssim_works_on_small_images():
    x = torch.rand(1, 3, 40, 56)
    assert 0 < float(ms_ssim(x, (x * 0.9))) <= 1


def test_rate_lambda_trades_distortion_for_bits():
    from codec.levels import tune_rate_lambda

    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 4, generator=g)
    latents = torch.randn(5000, 4, generator=g)
    level = build_levels(base, latents, (64,), 0, 0, log=lambda s: None)[64]
    bits0 = level.prior.information_bits(level.assign(latents, 0.0).numpy()) / len(latents)
    lam, bits = tune_rate_lambda(level, latents, bits0 - 0.5)
    assert lam > 0 and bits <= bits0 - 0.5 + 1e-9
    d0 = (latents - level.codebook[level.assign(latents, 0.0)]).pow(2).sum(1).mean()
    d1 = (latents - level.codebook[level.assign(latents, lam)]).pow(2).sum(1).mean()
    assert d1 > d0  # fewer bits, more distortion


def test_ms_ssim_on_tiny_frames():
    x = torch.rand(1, 3, 32, 48)
    assert abs(float(ms_ssim(x, x)) - 1) < 1e-6
    assert 0 < float(ms_ssim(x, x * 0.8)) < 1
