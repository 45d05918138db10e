"""Baseline recoveries: `none` (one fixed code), `neighbour` (average of known neighbours) and
`previous` (the previous frame's token), and the neighbour fill itself, which training a codec
under loss uses too."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from codec.tokens import FrameHistory, LossyTokenGrid, nearest_codes

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


class PreviousRecovery:
    """Each lost token becomes the co-located token of the previous frame as this receiver showed
    it: what a video decoder's simplest concealment does (copy the last frame's block). The first
    frame of a stream, or one whose previous frame had another grid, falls back to `neighbour`.
    With a coarse layer, a lost token whose cell arrived keeps the previous code only if it lies
    in that cell, else takes the cell's code nearest it."""

    name = "previous"
    conceal = False

    def recover(self, lossy: LossyTokenGrid, codebook: torch.Tensor,
                history: FrameHistory | None = None) -> np.ndarray:
        check_inputs(lossy, codebook)
        previous = history.previous if history is not None else None
        if previous is None or previous.shape != lossy.grid.shape or previous.level != lossy.grid.level:
            return NeighbourRecovery().recover(lossy, codebook)
        out = lossy.grid.indices.copy()
        out[lossy.missing] = previous.indices[lossy.missing]
        return snap_into_cells(lossy, out, codebook.float()[torch.from_numpy(out)], codebook)


def neighbour_fill(vectors: torch.Tensor, lost: torch.Tensor, codebook: torch.Tensor):
    """Each lost position takes the average of its known 8-neighbours' vectors, snapped to the
    nearest code of `codebook`; lost regions fill from their border inwards (a position with no
    known neighbour waits until its neighbours are filled), and a grid with nothing known takes the
    code nearest the codebook's mean. (B, D, h, w) vectors, (B, h, w) bool lost ->
    (filled vectors, (B, h, w) indices of the filled codes, -1 where nothing was lost).

    Differentiable: a filled vector passes its gradient to the neighbours it averages (the snap is
    straight-through), which is what training a codec under loss needs."""
    b, d, h, w = vectors.shape
    codebook = codebook.to(vectors.device, torch.float32)
    out = vectors.float()
    indices = torch.full((b, h, w), -1, dtype=torch.long, device=vectors.device)
    missing = lost.clone().bool()
    empty = missing.flatten(1).all(1)
    if empty.any():
        code = nearest_codes(codebook.mean(0, keepdim=True), codebook)[0]
        out = torch.where(empty[:, None, None, None], codebook[code][None, :, None, None].expand_as(out), out)
        indices[empty] = code
        missing[empty] = False
    kernel = torch.ones(1, 1, 3, 3, device=vectors.device)
    kernel[0, 0, 1, 1] = 0
    while missing.any():
        known = (~missing).float()[:, None]
        sums = F.conv2d(out * known, kernel.expand(d, 1, 3, 3), padding=1, groups=d)
        counts = F.conv2d(known, kernel, padding=1)
        ready = missing & (counts[:, 0] > 0)
        bs, ys, xs = torch.nonzero(ready, as_tuple=True)
        # gathered as (D, n) and transposed: the nearest-code products then round as they always
        # have, so that ties (a mean halfway between two codes) break as in earlier records
        means = (sums.transpose(0, 1)[:, bs, ys, xs] / counts[bs, 0, ys, xs]).t()
        codes = nearest_codes(means, codebook)
        snapped = codebook[codes] + (means - means.detach())  # the code exactly, the gradient to the means
        out = out.permute(0, 2, 3, 1).index_put((bs, ys, xs), snapped).permute(0, 3, 1, 2)
        indices[bs, ys, xs] = codes
        missing = missing & ~ready
    return out, indices
