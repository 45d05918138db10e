"""The token types shared by the codec, the recovery models and the simulator, and the one
nearest-code search that turns vectors into tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class TokenGrid:
    """VQ indices of one image at one codebook level.

    indices: (h, w) int array of codes in [0, level); image_size: (H, W) of the original image,
    which the decoder crops back to (the grid covers the image padded to a multiple of 16).
    """

    indices: np.ndarray
    level: int
    image_size: tuple[int, int]

    def __post_init__(self):
        self.indices = np.asarray(self.indices)
        if self.indices.ndim != 2:
            raise ValueError(f"token grid must be 2-D, got shape {self.indices.shape}")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= self.level):
            raise ValueError(f"token grid has indices outside [0, {self.level})")
        self.indices = self.indices.astype(np.int64, copy=False)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.indices.shape)


@dataclass
class LossyTokenGrid:
    """What a receiver holds after depacketizing: the grid with a mask of missing positions.
    Missing positions of `grid.indices` hold 0 and mean nothing until a recovery fills them."""

    grid: TokenGrid
    missing: np.ndarray  # (h, w) bool, True where the token was lost

    def __post_init__(self):
        self.missing = np.asarray(self.missing, dtype=bool)
        if self.missing.shape != self.grid.shape:
            raise ValueError(f"missing-token mask has shape {self.missing.shape}, "
                             f"the grid has {self.grid.shape}")

    @property
    def loss_rate(self) -> float:
        return float(self.missing.mean()) if self.missing.size else 0.0


def nearest_codes(vectors: torch.Tensor, codebook: torch.Tensor, bias: torch.Tensor | None = None,
                  chunk: int = 65536) -> torch.Tensor:
    """Index of the code nearest each vector: (..., D) vectors, (K, D) codebook -> (...) indices.

    `bias` (K,) is added to each code's squared distance (the rate term of entropy-constrained
    assignment). Distances are computed in float32, `chunk` rows at a time to bound memory; the
    |vector|^2 term is left out, since it is the same for every code."""
    import torch

    codebook = codebook.float()
    norms = codebook.pow(2).sum(1)
    if bias is not None:
        norms = norms + bias
    flat = vectors.float().reshape(-1, codebook.shape[1])
    out = [(norms[None, :] - 2 * part @ codebook.t()).argmin(1) for part in flat.split(chunk)]
    indices = torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
    return indices.view(vectors.shape[:-1])
