"""Baseline recoveries: `none` (one fixed code) and `neighbour` (average of known neighbours)."""

from __future__ import annotations

import numpy as np
import torch

from codec.tokens import LossyTokenGrid, nearest_codes, neighbour_fill

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
        if not lossy.missing.any():
            return out
        vectors = codebook.float()[torch.from_numpy(out)].permute(2, 0, 1)[None]
        with torch.no_grad():
            _, filled = neighbour_fill(vectors, torch.from_numpy(lossy.missing)[None], codebook)
        out[lossy.missing] = filled[0].numpy()[lossy.missing]
        return out
