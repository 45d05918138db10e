"""Codebook levels: smaller codebooks made by K-means from the base one, and each level's prior.

As in Mao et al. (DCC 2024), the base codebook's vectors are clustered (weighted by how often the
training split uses them) into K centroids, which become the level's codebook; a base index maps
to the level through its cluster. We then refine each level with a few Lloyd iterations on the
training latents themselves (the encoder and decoder stay frozen), which measurably lowers the
latent distortion (figures in docs/models.md). The prior of each level is the smoothed histogram
of the training split's indices at that level, either under nearest-code assignment or, with a
rate_lambda, under entropy-constrained assignment fitted jointly with the prior (ECVQ).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .entropy import Prior
from .tokens import nearest_codes

DEFAULT_LEVELS = (16, 64, 256, 1024)


@dataclass
class Level:
    size: int
    codebook: torch.Tensor  # (K, D) float32
    from_base: np.ndarray  # (base K,) int64: base index -> index at this level
    prior: Prior
    # entropy-constrained assignment: a code costs |z - e|^2 + rate_lambda * (its bits under the
    # prior); 0 is plain nearest-code quantisation
    rate_lambda: float = 0.0

    def assign(self, flat: torch.Tensor, rate_lambda: float | None = None) -> torch.Tensor:
        lam = self.rate_lambda if rate_lambda is None else rate_lambda
        if lam <= 0:
            return nearest_codes(flat, self.codebook)
        bits = torch.from_numpy(-np.log2(self.prior.probabilities)).float()
        return nearest_codes(flat, self.codebook, bias=lam * bits)


def weighted_kmeans(points: torch.Tensor, weights: torch.Tensor, k: int, seed: int,
                    iterations: int = 50) -> torch.Tensor:
    """k-means++ seeding then Lloyd iterations, each point counted with its weight."""
    g = torch.Generator().manual_seed(seed)
    points, weights = points.double(), weights.double().clamp_min(1e-9)
    centers = [points[torch.multinomial(weights, 1, generator=g)].squeeze(0)]
    d2 = (points - centers[0]).pow(2).sum(1)
    for _ in range(1, k):
        centers.append(points[torch.multinomial(weights * d2 + 1e-12, 1, generator=g)].squeeze(0))
        d2 = torch.minimum(d2, (points - centers[-1]).pow(2).sum(1))
    centers = torch.stack(centers)
    for _ in range(iterations):
        assign = nearest_codes(points, centers)
        mass = torch.zeros(k, dtype=points.dtype).index_add_(0, assign, weights)
        sums = torch.zeros_like(centers).index_add_(0, assign, points * weights[:, None])
        alive = mass > 0
        centers[alive] = sums[alive] / mass[alive, None]
    return centers.float()


def lloyd_refine(latents: torch.Tensor, centers: torch.Tensor, iterations: int) -> torch.Tensor:
    """Lloyd iterations of `centers` on the latents; empty clusters keep their centre."""
    centers = centers.clone().double()
    latents = latents.double()
    for _ in range(iterations):
        assign = nearest_codes(latents, centers)
        count = torch.bincount(assign, minlength=len(centers)).double()
        sums = torch.zeros_like(centers).index_add_(0, assign, latents)
        alive = count > 0
        centers[alive] = sums[alive] / count[alive, None]
    return centers.float()


def build_levels(base_codebook: torch.Tensor, latents: torch.Tensor, sizes=DEFAULT_LEVELS,
                 refine_iterations: int = 10, seed: int = 0, log=print,
                 refine_base: bool = False) -> dict[int, Level]:
    """`latents`: (N, D) pre-quantisation vectors of the training split. With `refine_base`, the
    base level's codebook gets the same Lloyd refinement as the smaller ones."""
    base_k = base_codebook.shape[0]
    base_assign = nearest_codes(latents, base_codebook)
    usage = torch.bincount(base_assign, minlength=base_k).float()
    levels = {}
    for k in sorted(sizes):
        if k == base_k:
            codebook = base_codebook.float().clone()
            if refine_base and refine_iterations:
                before = _distortion(latents, codebook)
                codebook = lloyd_refine(latents, codebook, refine_iterations)
                log(f"level {k}: latent MSE {before:.5f} as trained, {_distortion(latents, codebook):.5f} "
                    f"after {refine_iterations} Lloyd steps on latents")
        elif k < base_k:
            codebook = weighted_kmeans(base_codebook, usage + 1e-3, k, seed)
            before = _distortion(latents, codebook)
            if refine_iterations:
                codebook = lloyd_refine(latents, codebook, refine_iterations)
            log(f"level {k}: latent MSE {before:.5f} from K-means of the codebook, "
                f"{_distortion(latents, codebook):.5f} after {refine_iterations} Lloyd steps on latents")
        else:
            raise ValueError(f"level {k} is larger than the base codebook ({base_k})")
        from_base = nearest_codes(base_codebook, codebook).numpy().astype(np.int64)
        counts = torch.bincount(nearest_codes(latents, codebook), minlength=k).numpy()
        levels[k] = Level(k, codebook, from_base, Prior(counts))
        log(f"level {k}: {int((counts > 0).sum())} codes used, prior entropy "
            f"{levels[k].prior.entropy_bits():.3f} bits (uniform {np.log2(k):.0f})")
    return levels


def fit_entropy_constrained(level: Level, latents: torch.Tensor, rate_lambda: float,
                            iterations: int = 8) -> Level:
    """Entropy-constrained VQ (Chou, Lookabaugh and Gray, 1989) with the codebook held fixed:
    alternately assign each latent to the code with the least |z - e|^2 + lambda * bits(e), and
    re-estimate the prior from those assignments. A prior taken from nearest-code counts is near
    uniform (every code is used), so a bias towards cheap codes alone saves little; letting the
    prior follow the assignment concentrates it on the codes the rate term favours (the figures
    are in docs/models.md)."""
    current = Level(level.size, level.codebook, level.from_base, level.prior, rate_lambda)
    for _ in range(iterations):
        counts = torch.bincount(current.assign(latents), minlength=level.size).numpy()
        current = Level(level.size, level.codebook, level.from_base, Prior(counts), rate_lambda)
    return current


def rate_of(level: Level, latents: torch.Tensor) -> float:
    """Bits per token of `latents` assigned and coded with `level` (its prior, its lambda)."""
    return level.prior.information_bits(level.assign(latents).numpy()) / len(latents)


def tune_rate_lambda(level: Level, train: torch.Tensor, val: torch.Tensor, target_bits: float,
                     iterations: int = 14) -> Level:
    """The smallest rate_lambda whose entropy-constrained level, fitted on `train`, codes `val`
    in at most `target_bits` per token (bisection on a log scale: the rate falls as lambda
    grows). The prior is never fitted on `val`: it only picks lambda."""
    nearest_level = fit_entropy_constrained(level, train, 0.0, iterations=1)
    if rate_of(nearest_level, val) <= target_bits:
        return nearest_level
    scale = float((train - level.codebook[nearest_codes(train, level.codebook)]).pow(2).sum(1).mean())
    lo, hi = scale * 1e-3, scale
    best = fit_entropy_constrained(level, train, hi)
    while rate_of(best, val) > target_bits:
        lo, hi = hi, hi * 4
        if hi > 1e4 * scale:
            raise ValueError(f"no rate_lambda reaches {target_bits} bits per token")
        best = fit_entropy_constrained(level, train, hi)
    for _ in range(iterations):
        mid = float(np.sqrt(lo * hi))
        fitted = fit_entropy_constrained(level, train, mid)
        if rate_of(fitted, val) <= target_bits:
            hi, best = mid, fitted
        else:
            lo = mid
    return best


def latent_mse(level: Level, latents: torch.Tensor) -> float:
    """Mean squared distance between `latents` and the codes `level` assigns them."""
    return float((latents - level.codebook[level.assign(latents)]).pow(2).sum(1).mean())


def _distortion(latents: torch.Tensor, codebook: torch.Tensor) -> float:
    idx = nearest_codes(latents, codebook)
    return float((latents - codebook[idx]).pow(2).sum(1).mean())


def save_levels(levels: dict[int, Level], path: Path, info: dict | None = None) -> None:
    tensors = {}
    for k, level in levels.items():
        tensors[f"codebook.{k}"] = level.codebook.float().contiguous()
        tensors[f"from_base.{k}"] = torch.from_numpy(level.from_base).contiguous()
        tensors[f"prior_counts.{k}"] = torch.from_numpy(np.asarray(level.prior.counts, dtype=np.float64))
        tensors[f"rate_lambda.{k}"] = torch.tensor([float(level.rate_lambda)], dtype=torch.float64)
    save_file(tensors, str(path), metadata={"format": "simnet-levels/1", "info": json.dumps(info or {})})


def load_levels(path: Path) -> dict[int, Level]:
    from .checkpoint import CheckpointError

    try:
        tensors = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path}: not a levels file ({e})") from None
    sizes = sorted(int(k.split(".")[1]) for k in tensors if k.startswith("codebook."))
    if not sizes:
        raise CheckpointError(f"{path}: holds no codebook levels")
    levels = {}
    for k in sizes:
        try:
            codebook = tensors[f"codebook.{k}"].float()
            from_base = tensors[f"from_base.{k}"].numpy().astype(np.int64)
            counts = tensors[f"prior_counts.{k}"].numpy()
        except KeyError as e:
            raise CheckpointError(f"{path}: level {k} lacks {e}") from None
        if codebook.shape[0] != k or counts.shape != (k,) or from_base.max(initial=0) >= k:
            raise CheckpointError(f"{path}: level {k} has inconsistent shapes")
        lam = float(tensors[f"rate_lambda.{k}"][0]) if f"rate_lambda.{k}" in tensors else 0.0
        if not np.isfinite(lam) or lam < 0:
            raise CheckpointError(f"{path}: level {k} has a bad rate_lambda {lam}")
        levels[k] = Level(k, codebook, from_base, Prior(counts), lam)
    return levels
