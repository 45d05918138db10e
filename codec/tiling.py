"""Large images in overlapping tiles, so that encoding and decoding need memory for one tile, not
for the whole image. Tiles overlap, and each output is the tiles' weighted mean with weights that
ramp linearly across the overlap: the tokenizer normalises over whole feature maps (GroupNorm) and
attends across its lowest resolution, so tiles disagree slightly, and the ramps hide the seams.
How close a tiled decode comes to the whole-image decode is measured in docs/models.md."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def tile_spans(n: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most `size` that cover 0..n, neighbours sharing `overlap`, all of
    about the same length (the fewest tiles that fit)."""
    if n <= size:
        return [(0, n)]
    count = math.ceil((n - overlap) / (size - overlap))
    length = math.ceil((n + (count - 1) * overlap) / count)
    starts = [round(i * (n - length) / (count - 1)) for i in range(count)]
    return [(s, s + length) for s in starts]


def _ramp(span: tuple[int, int], n: int, overlap: int, scale: int) -> torch.Tensor:
    """1-D weights of one span in output units: rising over the overlap where a neighbour comes
    before it, falling where one comes after, flat at the image's edges."""
    start, end = span
    length = (end - start) * scale
    w = torch.ones(length)
    ramp = overlap * scale
    if ramp:
        up = (torch.arange(ramp) + 0.5) / ramp
        if start > 0:
            w[:ramp] = torch.minimum(w[:ramp], up)
        if end < n:
            w[-ramp:] = torch.minimum(w[-ramp:], up.flip(0))
    return w


def blend_tiles(run: Callable[[int, int, int, int], torch.Tensor], h: int, w: int, size: int,
                overlap: int, scale: int) -> torch.Tensor:
    """`run(y0, y1, x0, x1)` maps the grid region [y0:y1, x0:x1] (grid units) to a (B, C,
    (y1-y0)*scale, (x1-x0)*scale) tensor; the result covers the whole (h, w) grid, (B, C,
    h*scale, w*scale), each place the weighted mean of the tiles that cover it."""
    out = weight = None
    rows, cols = tile_spans(h, size, overlap), tile_spans(w, size, overlap)
    for ys in rows:
        wy = _ramp(ys, h, overlap, scale)
        for xs in cols:
            tile = run(ys[0], ys[1], xs[0], xs[1]).float()
            wt = wy[:, None] * _ramp(xs, w, overlap, scale)[None, :]
            if out is None:
                out = torch.zeros(*tile.shape[:2], h * scale, w * scale)
                weight = torch.zeros(h * scale, w * scale)
            region = (slice(ys[0] * scale, ys[1] * scale), slice(xs[0] * scale, xs[1] * scale))
            out[(..., *region)] += tile * wt
            weight[region] += wt
    return out / weight
