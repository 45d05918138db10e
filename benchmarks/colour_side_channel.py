"""How much of the VQ codec's colour error the chroma side channel (codec/colour.py) removes, and
for how many bytes, at several block sizes and steps: the measurement that chose its settings.

For each image: encode and decode at K (fp32), then replace the decoded picture's chroma at a
coarse scale with the original's, as a side channel would carry it. The chroma is YCbCr's Cb and
Cr (BT.601, linear, cheap at the receiver): block means over B x B pixels, quantised with step q,
each block predicted from its left neighbour (the first column from the block above), the
residuals' ideal code length under their histogram pooled over the images (what a fixed shipped
prior would approach), and the bytes of the colour section as the codec writes it (per-picture
Laplace scale, its 4-byte header and word padding included). The decoded chroma's own block
means are swapped for the sent ones, bilinearly interpolated, so detail inside a block stays the
decoder's. Also the oracles with nothing quantised: the original's per-channel mean RGB, and its
chroma at each block size.

    python benchmarks/colour_side_channel.py [--images ../shared/data/bsds500/val] [--limit 16]
        [--blocks 64,32,16] [--steps 2,4] [--codebook 1024] [--json OUT]

Never tune on Kodak: choose B and q on BSDS500 val, then look at Kodak once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

def dpcm_residuals(q: np.ndarray) -> np.ndarray:
    pred = np.zeros_like(q)
    pred[:, 1:] = q[:, :-1]
    pred[1:, 0] = q[:-1, 0]
    return (q - pred).ravel()


def with_chroma(decoded: np.ndarray, chroma_small: list[np.ndarray], block: int) -> np.ndarray:
    """The decoded picture with its Cb/Cr block means replaced by `chroma_small` (unquantised)."""
    from codec.colour import ColourPlane, apply

    return apply(decoded, ColourPlane(block, 1, *chroma_small))


def _numbers(kind):
    """An argparse type: a comma-separated list of positive `kind`s, or a one-line error."""
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers") from None
        if any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"{text!r}: every value must be positive")
        return values
    return parse


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=None, help="folder (default: BSDS500 val)")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--blocks", type=_numbers(int), default=[64, 32, 16], help="block sides in pixels")
    ap.add_argument("--steps", type=_numbers(int), default=[2, 4],
                    help="quantisation steps of Cb/Cr (0-255 scale)")
    ap.add_argument("--codebook", type=int, default=1024)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from skimage.color import deltaE_ciede2000, rgb2lab

    from codec import colour
    from codec.colour import TO_YCC, block_means
    from codec.images import default_data_root, list_images, load_rgb
    from codec.zoo import load_codec

    folder = args.images or default_data_root() / "bsds500" / "val"
    if not folder.is_dir():
        sys.exit(f"{folder}: no such folder (set SIMNET_DATA or pass --images)")
    codec = load_codec(precision="fp32")
    pictures = []
    for path in list_images(folder)[: args.limit]:
        rgb = load_rgb(path)
        grid = codec.encode(rgb, args.codebook)
        pictures.append((rgb, codec.decode(grid), len(codec.to_bytes(grid)), rgb2lab(rgb)))

    def colour_error(fix) -> float:
        return float(np.mean([deltaE_ciede2000(lab, rgb2lab(fix(rgb, dec))).mean() for rgb, dec, _, lab in pictures]))

    result = {"images": str(folder), "count": len(pictures), "codebook": args.codebook,
              "mean_file_bytes": float(np.mean([n for _, _, n, _ in pictures])),
              "ciede2000_decoded": colour_error(lambda rgb, dec: dec),
              "ciede2000_oracle_mean_rgb": colour_error(
                  lambda rgb, dec: np.clip(np.round(dec + rgb.mean((0, 1)) - dec.mean((0, 1))), 0, 255).astype(np.uint8)),
              "side_channel": []}
    for block in args.blocks:
        def sent(rgb, step):
            ycc = rgb.astype(np.float64) @ TO_YCC.T
            means = [block_means(ycc[..., c], block) for c in (1, 2)]
            return means if step == 0 else [np.round(m / step) for m in means]

        row = {"block": block, "oracle_ciede2000": colour_error(
            lambda rgb, dec: with_chroma(dec, sent(rgb, 0), block))}
        for step in args.steps:
            residuals = np.concatenate([dpcm_residuals(q.astype(int)) for rgb, *_ in pictures for q in sent(rgb, step)])
            _, counts = np.unique(residuals, return_counts=True)
            p = counts / counts.sum()
            bits = float(-(p * np.log2(p)).sum())
            coded = [len(colour.to_bytes(colour.measure(rgb, block, int(step)))) for rgb, *_ in pictures]
            row[f"q{step:g}"] = {
                "ciede2000": colour_error(lambda rgb, dec: colour.apply(dec, colour.measure(rgb, block, int(step)))),
                "bytes_per_image": bits * len(residuals) / len(pictures) / 8, "bits_per_value": bits,
                "coded_bytes_per_image": float(np.mean(coded))}
        result["side_channel"].append(row)
        print(json.dumps(row), file=sys.stderr)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
