"""A coarse second description of each token against Reed-Solomon parity of the same bytes, under packet loss.

Issue 19 left one lever standing: the pixels of a lost token cannot be guessed from its context, so
what lifts them is information sent twice. This benchmark measures the two ways of spending the
same extra bytes on a frame's packets:

- `fec`: Reed-Solomon erasure parity over the frame's token packets (an MDS code: every source
  packet is back when at least as many packets arrived as there are sources; otherwise the
  received sources are kept and the lost tokens recovered as usual);
- `layered`: each token's cell at a coarser level (K = 16 or 64; the levels nest) in packets of
  their own, entropy coded under that level's prior and interleaved with another seed, so that a
  token whose fine packet is lost usually still has its cell; the receiver then picks a code
  inside the cell (the transformer's posterior restricted to the cell, or the code in the cell
  nearest the neighbours' average).

Both schemes add about the same number of wire bytes (the parity count whose bytes come nearest
the coarse packets'; the table gives both overheads). Packets are real: the codec's own
packetizer and ANS coder, compact headers and the FEC shim counted. Every frame's packets cross a
Bernoulli or Gilbert-Elliott channel (simnet.network.loss_models) at each loss rate and seed, fine
(source) packets first, then coarse (parity) ones. Scores: PSNR and the drop against the lossless
decode, mean over images and seeds. Example (BSDS500 val, as chosen; Kodak only to report):

    python benchmarks/layered_vs_fec.py --images ../shared/data/bsds500/val --limit 12 --loss 0.1,0.2,0.3,0.4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec.bitstream import grid_shape_for  # noqa: E402
from codec.images import list_images, load_rgb  # noqa: E402
from codec.metrics import region_psnr  # noqa: E402
from codec.packets import COMPACT_OVERHEAD_BYTES, interleave_order  # noqa: E402
from codec.tokens import CoarseCells, LossyTokenGrid, TokenGrid  # noqa: E402
from codec.zoo import load_codec  # noqa: E402
from simnet.experiment.setup import recovery_for  # noqa: E402
from simnet.network.loss_models import GilbertElliott  # noqa: E402
from simnet.network.protection import SHIM_BYTES  # noqa: E402

OVERHEAD = COMPACT_OVERHEAD_BYTES + SHIM_BYTES  # what a streamed packet carries besides its payload
PARITY_LENGTH_BYTES = 2  # each RS block holds its source packet's length (simnet.network.protection)


def whole_psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    return region_psnr(reference, decoded, np.ones(reference.shape[:2], bool))


def packet_tokens(packets) -> tuple[list[np.ndarray], list[int]]:
    """The grid positions each packet of one layer carries, and each packet's wire bytes."""
    h, w = grid_shape_for(*packets[0].image_size)
    order = interleave_order(h * w, packets[0].interleave, packets[0].seed)
    return ([order[p.start:p.start + p.tokens] for p in packets],
            [OVERHEAD + len(p.payload) for p in packets])


class Receiver:
    """Fills a frame's lost tokens with `neighbour` and the transformer (the product's own
    recovery methods, coarse cells included) and scores the decodes (identical grids share one)."""

    def __init__(self, codec, methods: dict, level: int, rgb: np.ndarray, grid: TokenGrid):
        self.codec, self.methods, self.level, self.rgb, self.grid = codec, methods, level, rgb, grid
        self.codebook = codec.codebook(level)
        self.lossless = whole_psnr(rgb, codec.decode(grid))
        self._scores: dict[bytes, float] = {}

    def score(self, indices: np.ndarray) -> float:
        key = indices.tobytes()
        if key not in self._scores:
            decoded = self.codec.decode(TokenGrid(indices, self.level, self.grid.image_size))
            self._scores[key] = whole_psnr(self.rgb, decoded)
        return self._scores[key]

    def recover(self, missing: np.ndarray, cells: CoarseCells | None = None) -> dict[str, float]:
        """PSNR of each method's fill of the `missing` positions, inside the known `cells`."""
        if not missing.any():
            return {name: self.lossless for name in self.methods}
        received = TokenGrid(np.where(missing, 0, self.grid.indices), self.level, self.grid.image_size)
        lossy = LossyTokenGrid(received, missing, cells)
        return {name: self.score(method.recover(lossy, self.codebook)) for name, method in self.methods.items()}


def channel(rate: float, burst: float, seed: int):
    model = GilbertElliott.from_rate_and_burst(rate, burst, seed=seed)
    return lambda count: np.array([model.drop() for _ in range(count)])


def image_arguments(description: str) -> argparse.ArgumentParser:
    """The options these benchmarks share: which images, which codec, which level."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--weights", type=Path, default=None, help="codec weights folder (default: shipped)")
    ap.add_argument("--level", type=int, default=1024)
    return ap


def main(argv=None) -> int:
    ap = image_arguments(__doc__.splitlines()[0])
    ap.add_argument("--cells", default="16,64", help="coarse levels sent as the second description")
    ap.add_argument("--loss", default="0.1,0.2,0.3,0.4")
    ap.add_argument("--bursts", default="1,3", help="mean burst lengths (1: independent losses)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=48, help="tokens per fine packet")
    ap.add_argument("--coarse-tokens", type=int, default=96,
                    help="cells per coarse packet (a coarse cell takes half a fine token's bits or less)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    codec = load_codec(args.weights, "fp32", "cpu")
    level = args.level
    if level != max(codec.level_sizes):
        raise SystemExit(f"--level must be the base level {max(codec.level_sizes)}, which the cells nest")
    methods = {name: recovery_for(name, codec) for name in ("neighbour", "transformer")}
    methods["transformer"].check_codebook(level, codec.codebook(level))
    cells = [int(k) for k in args.cells.split(",") if k]
    rates = [float(r) for r in args.loss.split(",")]
    bursts = [float(b) for b in args.bursts.split(",")]
    records = []
    started = time.time()
    for i, path in enumerate(list_images(args.images)[:args.limit]):
        rgb = load_rgb(path)
        grid = codec.encode(rgb, level)
        rx = Receiver(codec, methods, level, rgb, grid)
        n = grid.indices.size
        for burst in bursts:
            for rate in rates:
                for s in range(args.seeds):
                    seed = 1000 * i + 100 * s + int(rate * 100) + int(burst * 7)
                    fine, fine_bytes = packet_tokens(codec.packetize(grid, max_tokens=args.max_tokens, seed=seed,
                                                                     overhead=OVERHEAD))
                    base = {"image": path.name, "burst": burst, "loss": rate, "seed": s,
                            "lossless": rx.lossless, "fine_bytes": sum(fine_bytes)}
                    drops = channel(rate, burst, seed)(len(fine))
                    missing = np.zeros(n, bool)
                    for tokens, gone in zip(fine, drops):
                        missing[tokens] = gone
                    scores = rx.recover(missing.reshape(grid.shape))
                    records.append({**base, "scheme": "none", "extra_bytes": 0, **scores})
                    for k in cells:
                        coarse_grid = codec.cells(grid, k)
                        coarse, coarse_bytes = packet_tokens(codec.coarse_packets(
                            grid, k, seed=seed, max_tokens=args.coarse_tokens, overhead=OVERHEAD))
                        extra = sum(coarse_bytes)
                        # layered: the same channel carries the fine packets, then the coarse ones
                        gone = channel(rate, burst, seed)(len(fine) + len(coarse))
                        miss = np.zeros(n, bool)
                        for tokens, g in zip(fine, gone[:len(fine)]):
                            miss[tokens] = g
                        known_cells = coarse_grid.indices.ravel().copy()
                        for tokens, g in zip(coarse, gone[len(fine):]):
                            if g:
                                known_cells[tokens] = -1
                        scores = rx.recover(miss.reshape(grid.shape),
                                            CoarseCells(k, known_cells.reshape(grid.shape), codec.cell_map(k)))
                        records.append({**base, "scheme": f"layered{k}", "extra_bytes": extra,
                                        "cells_known": float((known_cells[miss] >= 0).mean()) if miss.any() else None,
                                        **scores})
                        # RS parity: the number of parity packets (each the longest source plus
                        # its length field) whose bytes come nearest the coarse packets'
                        parity_bytes = max(fine_bytes) + PARITY_LENGTH_BYTES
                        parities = max(1, round(extra / parity_bytes))
                        gone = channel(rate, burst, seed)(len(fine) + parities)
                        miss = np.zeros(n, bool)
                        if gone.sum() > parities:  # too many lost: only the received sources count
                            for tokens, g in zip(fine, gone[:len(fine)]):
                                miss[tokens] = g
                        scores = rx.recover(miss.reshape(grid.shape))
                        records.append({**base, "scheme": f"fec{k}", "extra_bytes": parities * parity_bytes,
                                        "parities": parities, "sources": len(fine), **scores})
        print(f"{i + 1} images, {time.time() - started:.0f} s", file=sys.stderr, flush=True)

    print("| channel | loss | scheme | extra bytes | neighbour PSNR (drop) | transformer PSNR (drop) |")
    print("|---|---|---|---|---|---|")
    summary = []
    for burst in bursts:
        for rate in rates:
            for scheme in ["none"] + [f"{p}{k}" for k in cells for p in ("layered", "fec")]:
                rows = [r for r in records if r["burst"] == burst and r["loss"] == rate and r["scheme"] == scheme]
                mean = {key: float(np.mean([r[key] for r in rows]))
                        for key in ("lossless", "neighbour", "transformer", "extra_bytes", "fine_bytes")}
                summary.append({"burst": burst, "loss": rate, "scheme": scheme, **mean, "frames": len(rows)})
                kind = "Bernoulli" if burst == 1 else f"GE burst {burst:g}"
                print(f"| {kind} | {rate:.0%} | {scheme} | {mean['extra_bytes'] / mean['fine_bytes']:+.0%} | "
                      f"{mean['neighbour']:.2f} ({mean['lossless'] - mean['neighbour']:.2f}) | "
                      f"{mean['transformer']:.2f} ({mean['lossless'] - mean['transformer']:.2f}) |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "summary": summary, "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
