"""Baseline recoveries: `none` (one fixed code) and `neighbour` (average of known neighbours)."""

from __future__ import annotations

import numpy as np
import torch

from codec.tokens import FrameHistory, LossyTokenGrid, nearest_codes, neighbour_fill

from .base import check_inputs, snap_into_cells


class NoneRecovery:
    """Every lost token takes the code nearest the codebook mean: what a decoder does that knows
    nothing about the lost positions (with a coarse layer: the code of its cell nearest that mean)."""

    name = "none"
    conceal = False

    def recover(self, lossy: LossyTokenGrid, codebook: torch.Tensor,
                history: FrameHistory | None = None) -> np.ndarray:
        check_inputs(lossy, codebook)
        out = lossy.grid.indices.copy()
        mean = codebook.float().mean(0, keepdim=True)
        out[lossy.missing] = int(nearest_codes(mean, codebook)[0])
        return snap_into_cells(lossy, out, mean.expand(*out.shape, -1), codebook)


class NeighbourRecovery:
    """Each lost token becomes the average of its known 8-neighbours' code vectors, snapped to
    the nearest code. Lost regions are filled from their border inwards: a position with no known
    neighbour waits until its neighbours have been filled. With a coarse layer, a lost token whose
    cell arrived takes the code of that cell nearest its fill."""

    name = "neighbour"
    conceal = False

    def recover(self, lossy: LossyTokenGrid, codebook: torch.Tensor,
                history: FrameHistory | None = None) -> np.ndarray:
        check_inputs(lossy, codebook)
        out = lossy.grid.indices.copy()
        if not lossy.missing.any():
            return out
        vectors = codebook.float()[torch.from_numpy(out)].permute(2, 0, 1)[None]
        with torch.no_grad():
            fill, filled = neighbour_fill(vectors, torch.from_numpy(lossy.missing)[None], codebook)
        out[lossy.missing] = filled[0].numpy()[lossy.missing]
        return snap_into_cells(lossy, out, fill[0].permute(1, 2, 0), codebook)
