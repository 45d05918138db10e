"""Receiver-side ceilings for lost tokens: the transformer's posterior rendered in pixels, and recovery when each lost token's coarse cell is known.

Two questions of issue 19, measured without training on the validation split (never Kodak):

1. Is the transformer's MMSE code (the code nearest its posterior mean vector) leaving PSNR on
   the table? The PSNR-optimal estimate of the picture under the model is the posterior mean in
   pixels: the average of decodes of grids whose lost tokens are drawn from the posterior. Its
   Monte-Carlo estimate with N draws is compared with the MMSE code and with `neighbour`.
2. If a second description of each token (its cell at a coarser level, K = 16 or 64, which the
   levels nest) arrived when the token was lost, how much better does the transformer pick a code
   inside the cell than the code nearest the neighbours' average does? This is the part a
   generative model would play in a layered (protected) stream.

Prints one row per method and loss rate: PSNR of the picture, of the lost tokens' pixels and of
the received ones, mean over images, and the drop against the lossless decode. Example:

    python benchmarks/posterior_decode.py --images ../shared/data/bsds500/val --limit 12 --loss 0.2,0.4
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec.images import list_images, load_rgb  # noqa: E402
from codec.metrics import lost_split  # noqa: E402
from codec.tokens import CoarseCells, LossyTokenGrid, TokenGrid, random_token_mask  # noqa: E402
from codec.zoo import load_codec  # noqa: E402
from simnet.experiment.setup import recovery_for  # noqa: E402

from layered_vs_fec import image_arguments, whole_psnr as whole  # noqa: E402  (benchmarks/ is on the path when run as a script)


def to_pixels(codec, indices: torch.Tensor, level: int, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) indices -> (B, 3, H, W) float pixels in [0, 255], cropped to the picture."""
    y = codec.decode_tensor(indices, level)[..., :size[0], :size[1]]
    return (y + 1) * 127.5


def as_uint8(pixels: torch.Tensor) -> np.ndarray:
    return pixels.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def main(argv=None) -> int:
    ap = image_arguments(__doc__.splitlines()[0])
    ap.add_argument("--loss", default="0.2,0.4")
    ap.add_argument("--draws", default="4,16", help="posterior draws averaged in pixels")
    ap.add_argument("--cells", default="16,64", help="coarse levels whose cell is known")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    codec = load_codec(args.weights, "fp32", "cpu")
    level = args.level
    codebook = codec.codebook(level).float()
    rates = [float(r) for r in args.loss.split(",")]
    draws = [int(n) for n in args.draws.split(",") if n]
    cells = [int(k) for k in args.cells.split(",") if k]
    if cells and level != codec.base_level:
        raise SystemExit(f"--cells needs --level {codec.base_level} (the base level the cells nest)")
    methods = {name: recovery_for(name, codec) for name in ("neighbour", "transformer")}
    tr = methods["transformer"]  # its posterior, drawn from below
    tr.check_codebook(level, codebook)
    rows: dict[tuple[str, float], list[dict]] = {}
    started = time.time()
    for i, path in enumerate(list_images(args.images)[:args.limit]):
        rgb = load_rgb(path)
        size = rgb.shape[:2]
        grid = codec.encode(rgb, level)
        true = torch.from_numpy(grid.indices).long()
        lossless = codec.decode(grid)
        for rate in rates:
            gen = torch.Generator().manual_seed(args.seed * 7919 + i * 101 + int(rate * 1000))
            missing = random_token_mask(grid.shape, rate, int(gen.initial_seed()))
            miss = torch.from_numpy(missing)
            received = true.masked_fill(miss, 0)
            logits, positions = tr._logits(received, miss.clone(), level)
            probs = torch.softmax(logits.float(), -1)
            ys, xs = positions // grid.shape[1], positions % grid.shape[1]
            lossy = LossyTokenGrid(TokenGrid(received.numpy(), level, size), missing)
            candidates = {"neighbour": methods["neighbour"].recover(lossy, codebook),
                          "transformer (MMSE code)": methods["transformer"].recover(lossy, codebook)}
            averaged: dict[str, np.ndarray] = {}
            for n in draws:
                total = torch.zeros(3, *size, dtype=torch.float64)
                for _ in range(n):
                    g = true.clone()
                    g[ys, xs] = torch.multinomial(probs, 1, generator=gen)[:, 0]
                    total += to_pixels(codec, g[None], level, size)[0].double()
                averaged[f"transformer, pixel mean of {n} draws"] = as_uint8(total / n)
            for k in cells:  # every lost token's cell arrived
                known = LossyTokenGrid(lossy.grid, missing, CoarseCells(k, codec.cells(grid, k).indices,
                                                                        codec.cell_map(k)))
                for name, method in methods.items():
                    candidates[f"K={k} cell known: {name} in cell"] = method.recover(known, codebook)
            decoded = {name: codec.decode(TokenGrid(g, level, size)) for name, g in candidates.items()}
            decoded.update(averaged)
            for name, picture in decoded.items():
                split = lost_split(rgb, picture, missing, codec.factor)
                rows.setdefault((name, rate), []).append(
                    {"psnr": whole(rgb, picture), "lossless": whole(rgb, lossless), **split})
        print(f"{i + 1} images, {time.time() - started:.0f} s", file=sys.stderr, flush=True)

    table = []
    print("| method | loss | PSNR | drop | PSNR lost | PSNR kept |")
    print("|---|---|---|---|---|---|")
    for (name, rate), recs in rows.items():
        mean = {key: float(np.mean([r[key] for r in recs])) for key in recs[0]}
        table.append({"method": name, "loss": rate, **mean, "images": len(recs)})
        print(f"| {name} | {rate:.0%} | {mean['psnr']:.2f} | {mean['lossless'] - mean['psnr']:.2f} | "
              f"{mean['psnr_lost']:.2f} | {mean['psnr_received']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": table},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
