import numpy as np
import pytest
import torch

from codec.levels import build_levels, load_levels, save_levels, weighted_kmeans
from codec.tokens import nearest_codes
from codec.metrics import ms_ssim, psnr, ssim


def test_nearest_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    pts, cb = torch.randn(500, 8, generator=g), torch.randn(30, 8, generator=g)
    brute = torch.cdist(pts, cb).argmin(1)
    assert torch.equal(nearest_codes(pts, cb, chunk=64), brute)


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


def test_entropy_constrained_levels_trade_distortion_for_bits():
    from codec.levels import fit_entropy_constrained, latent_mse, rate_of, tune_rate_lambda

    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 4, generator=g)
    train, val = torch.randn(6000, 4, generator=g), torch.randn(3000, 4, generator=g)
    level = build_levels(base, train, (64,), 0, 0, log=lambda s: None)[64]
    bits0, mse0 = rate_of(level, val), latent_mse(level, val)
    tuned = tune_rate_lambda(level, train, val, bits0 - 1.0)
    assert tuned.rate_lambda > 0
    assert bits0 - 1.0 - 0.1 < rate_of(tuned, val) <= bits0 - 1.0 + 1e-9  # on target, from below
    assert latent_mse(tuned, val) > mse0  # fewer bits, more distortion
    # the jointly fitted prior beats the one-shot bias under the nearest-code prior at equal lambda
    one_shot = type(level)(64, level.codebook, level.from_base, level.prior, tuned.rate_lambda)
    assert rate_of(tuned, val) < rate_of(one_shot, val)
    # the fitted prior is the histogram of its own assignments on the training split
    again = fit_entropy_constrained(tuned, train, tuned.rate_lambda, iterations=1)
    assert abs(rate_of(again, train) - rate_of(tuned, train)) < 0.05
    # a target the nearest code already meets needs no lambda
    assert tune_rate_lambda(level, train, val, bits0 + 1).rate_lambda == 0


def test_ms_ssim_on_tiny_frames():
    x = torch.rand(1, 3, 32, 48)
    assert abs(float(ms_ssim(x, x)) - 1) < 1e-6
    assert 0 < float(ms_ssim(x, x * 0.8)) < 1
