"""Baseline recoveries: `none` (one fixed code) and `neighbour` (average of known neighbours)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from codec.tokens import LossyTokenGrid, nearest_codes

from .base import check_inputs


class NoneRecovery:
    """Every lost token takes the code nearest the codebook mean: what a decoder does that knows
    nothing about the lost positions."""

    name = "none"
    conceal = False

    def recover(self, lossy: LossyTokenGrid, codebook: torch.Tensor) -> np.ndarray:
        check_inputs(lossy, codebook)
        out = lossy.grid.indices.copy()
        fill = int(nearest_codes(codebook.float().mean(0, keepdim=True), codebook)[0])
        out[lossy.missing] = fill
        return out


class NeighbourRecovery:
    """Each lost token becomes the average of its known 8-neighbours' code vectors, snapped to
    the nearest code. Lost regions are filled from their border inwards: a position with no known
    neighbour waits until its neighbours have been filled."""

    name = "neighbour"
    conceal = False

    def recover(self, lossy: LossyTokenGrid, codebook: torch.Tensor) -> np.ndarray:
        check_inputs(lossy, codebook)
        out = lossy.grid.indices.copy()
        missing = lossy.missing.copy()
        if not missing.any():
            return out
        if missing.all():
            return NoneRecovery().recover(lossy, codebook)
        kernel = torch.ones(1, 1, 3, 3)
        kernel[0, 0, 1, 1] = 0
        while missing.any():
            known = torch.from_numpy(~missing).float()[None, None]
            vectors = codebook.float()[torch.from_numpy(out)].permute(2, 0, 1)[None] * known
            sums = F.conv2d(vectors, kernel.expand(vectors.shape[1], 1, 3, 3), padding=1,
                            groups=vectors.shape[1])[0]
            counts = F.conv2d(known, kernel, padding=1)[0, 0]
            ready = torch.from_numpy(missing) & (counts > 0)
            ys, xs = torch.nonzero(ready, as_tuple=True)
            means = (sums[:, ys, xs] / counts[ys, xs]).t()
            out[ys.numpy(), xs.numpy()] = nearest_codes(means, codebook).numpy()
            missing[ys.numpy(), xs.numpy()] = False
        return out
