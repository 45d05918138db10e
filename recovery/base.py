"""The recovery interface: fill the missing positions of a token grid.

A method sees only what a receiver has: the indices that arrived, the mask of missing positions,
the cells the coarse layer delivered (where the stream sends one), the level's codebook
vectors (K, D), and the stream's history (`FrameHistory`: the frames before, as the receiver
recovered and showed them; today's methods work within the frame and leave it unused). It returns a complete (h, w) index grid in which every received index is unchanged
and every lost token whose cell arrived holds a code of that cell.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from codec.tokens import FrameHistory, LossyTokenGrid, nearest_in_cells


class RecoveryError(ValueError):
    """An input a recovery method cannot use; the message says what is wrong."""


class Recovery(Protocol):
    name: str
    conceal: bool  # its fills are decoded by the codec's concealing decoder ('+conceal' specs)

    def recover(self, lossy: LossyTokenGrid, codebook: torch.Tensor,
                history: FrameHistory | None = None) -> np.ndarray: ...


def check_inputs(lossy: LossyTokenGrid, codebook: torch.Tensor) -> None:
    grid = lossy.grid
    if codebook.ndim != 2 or codebook.shape[0] != grid.level:
        raise RecoveryError(f"codebook of shape {tuple(codebook.shape)} does not match level {grid.level}")
    if lossy.missing.shape != grid.shape:
        raise RecoveryError(f"mask shape {lossy.missing.shape} differs from grid shape {grid.shape}")
    known = grid.indices[~lossy.missing]
    if known.size and (known.min() < 0 or known.max() >= grid.level):
        raise RecoveryError(f"grid holds indices outside [0, {grid.level})")


def snap_into_cells(lossy: LossyTokenGrid, filled: np.ndarray, vectors: torch.Tensor,
                    codebook: torch.Tensor) -> np.ndarray:
    """Where the coarse layer gave a lost token's cell, replace its fill in `filled` (h, w) by the
    code of that cell nearest its vector in `vectors` (h, w, D); `filled` as it is elsewhere."""
    if lossy.cells is None:
        return filled
    where = lossy.missing & lossy.cells.known
    if not where.any():
        return filled
    out = filled.copy()
    ys, xs = np.nonzero(where)
    out[ys, xs] = nearest_in_cells(vectors[torch.from_numpy(ys), torch.from_numpy(xs)],
                                   torch.from_numpy(lossy.cells.indices[ys, xs]),
                                   torch.from_numpy(lossy.cells.of_code), codebook).numpy()
    return out
