"""The token types shared by the codec, the recovery models and the simulator, and the one
nearest-code search that turns vectors into tokens."""

from __future__ import annotations

import math
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
class CoarseCells:
    """What the coarse layer tells a receiver: each position's cell at a coarser level (its code
    there; -1 where that packet was lost too), and which cell each code of the grid's level lies
    in. A lost token whose cell arrived is known to be one of the few codes of that cell."""

    level: int
    indices: np.ndarray  # (h, w) int64 in [-1, level)
    of_code: np.ndarray  # (grid level,) int64: code -> its cell

    def __post_init__(self):
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.of_code = np.asarray(self.of_code, dtype=np.int64)
        if self.indices.ndim != 2:
            raise ValueError(f"coarse cells must be 2-D, got shape {self.indices.shape}")
        for name, values, low in (("cells", self.indices, -1), ("code-to-cell map", self.of_code, 0)):
            if values.size and (values.min() < low or values.max() >= self.level):
                raise ValueError(f"{name} outside [{low}, {self.level})")

    @property
    def known(self) -> np.ndarray:
        return self.indices >= 0


@dataclass
class LossyTokenGrid:
    """What a receiver holds after depacketizing: the grid with a mask of missing positions.
    Missing positions of `grid.indices` hold 0 and mean nothing until a recovery fills them.
    `cells`: the coarse layer, where the stream sends one."""

    grid: TokenGrid
    missing: np.ndarray  # (h, w) bool, True where the token was lost
    cells: CoarseCells | None = None

    def __post_init__(self):
        self.missing = np.asarray(self.missing, dtype=bool)
        if self.missing.shape != self.grid.shape:
            raise ValueError(f"missing-token mask has shape {self.missing.shape}, "
                             f"the grid has {self.grid.shape}")
        if self.cells is not None:
            if self.cells.indices.shape != self.grid.shape:
                raise ValueError(f"coarse cells have shape {self.cells.indices.shape}, the grid has {self.grid.shape}")
            if len(self.cells.of_code) != self.grid.level:
                raise ValueError(f"the code-to-cell map covers {len(self.cells.of_code)} codes, "
                                 f"the grid's level is {self.grid.level}")

    @property
    def loss_rate(self) -> float:
        return float(self.missing.mean()) if self.missing.size else 0.0


@dataclass
class FrameHistory:
    """What a stream's receiver keeps of the frames before the one it is recovering, newest last:
    their complete token grids (as recovered) and the pictures it showed. Bounded by the
    receiver's window; empty for the first frame or a stream of stills."""

    grids: tuple[TokenGrid, ...] = ()
    pictures: tuple[np.ndarray, ...] = ()
    # each grid's positions that were guesses (lost or stale), None where none was
    unsure: tuple[np.ndarray | None, ...] = ()

    @property
    def previous(self) -> TokenGrid | None:
        return self.grids[-1] if self.grids else None

    @property
    def previous_unsure(self) -> np.ndarray | None:
        """The positions of the previous grid that were guesses, or None where it had none."""
        return self.unsure[-1] if self.unsure else None


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


def nearest_in_cells(vectors: torch.Tensor, cells: torch.Tensor, of_code: torch.Tensor,
                     codebook: torch.Tensor) -> torch.Tensor:
    """Per row of `vectors` (N, D), the index of the code nearest it among the codes of
    `codebook` (K, D) that lie in the row's cell: `cells` (N,) the cells, `of_code` (K,) each
    code's cell. Every cell must hold at least one code (the levels nest: each has its codes)."""
    import torch

    codebook = codebook.float()
    inside = of_code[None, :].to(cells.device) == cells[:, None]
    d2 = codebook.pow(2).sum(1)[None, :] - 2 * vectors.float() @ codebook.t()
    return d2.masked_fill(~inside, torch.inf).argmin(1)


def random_token_mask(shape: tuple[int, int], rate: float, seed: int | np.random.Generator) -> np.ndarray:
    """Exactly round(rate * n) positions lost, chosen uniformly with `seed` (a seed, or a generator
    to draw from)."""
    n = shape[0] * shape[1]
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=int(round(rate * n)), replace=False)] = True
    return mask.reshape(shape)


MAX_TRAIN_RATIO = 0.8  # losses past 80% are not worth the model's capacity: decoding fails anyway


MASK_PATTERNS = ("mixed", "scattered")


def draw_mask(rng: np.random.Generator, h: int, w: int, ratio: float | None = None,
              pattern: str = "mixed") -> np.ndarray:
    """One training mask of lost positions, shape (h, w): scattered tokens (interleaved packets),
    raster runs (packets without interleaving) or rectangles, in the shares the receiver meets
    ("mixed"), or scattered tokens only ("scattered": what the codec's interleaving makes of lost
    packets)."""
    if pattern not in MASK_PATTERNS:
        raise ValueError(f"mask pattern {pattern!r}: one of {', '.join(MASK_PATTERNS)}")
    n = h * w
    if ratio is None:
        # MaskGIT's cosine distribution, scaled so that the 0-40% losses the receiver meets most
        # (and the partly filled grids of iterative decoding) get their share of the batches
        ratio = float(np.clip(MAX_TRAIN_RATIO * math.cos(math.pi / 2 * rng.random()), 1 / n, 0.95))
    kind = rng.random() if pattern == "mixed" else 0.0
    mask = np.zeros(n, dtype=bool)
    if kind < 0.6:  # scattered: interleaved packets
        mask[rng.choice(n, size=max(1, round(ratio * n)), replace=False)] = True
    elif kind < 0.8:  # raster runs: packets in raster order
        run = int(rng.integers(2, 33))
        starts = np.arange(0, n, run)
        lost = starts[rng.random(len(starts)) < ratio]
        for s in lost:
            mask[s: s + run] = True
    else:  # rectangles
        grid = mask.reshape(h, w)
        while grid.mean() < ratio:
            bh, bw = int(rng.integers(1, h // 2 + 2)), int(rng.integers(1, w // 2 + 2))
            y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            grid[y:y + bh, x:x + bw] = True
    if not mask.any():
        mask[rng.integers(n)] = True
    return mask.reshape(h, w)
