"""The recovery table of docs/models.md: `simnet eval --loss ...` on Kodak (evaluation only;
nothing is tuned on it) at each codebook level, tokens lost at random and whole packets lost in
bursts through the codec's interleaving, for every recovery method; as markdown, with the
PSNR lost against the lossless decode and the transformer's margin over `neighbour`.

    python benchmarks/recovery_table.py [--images ../shared/data/kodak] [--out reports/recovery]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared/data/kodak"


def run_eval(images: str, level: int, loss: str, methods: str, path: Path, burst: float | None,
             limit: int | None, weights: str | None, seeds: int = 1, precision: str = "auto") -> dict:
    cmd = [sys.executable, "-m", "simnet.cli", "eval", "--images", images, "--codebook", str(level),
           "--loss", loss, "--methods", methods, "--no-baselines", "--json", str(path), "--seeds", str(seeds),
           "--precision", precision]
    if burst is not None:
        cmd += ["--burst", str(burst)]
    if limit:
        cmd += ["--limit", str(limit)]
    if weights:
        cmd += ["--weights", weights]
    subprocess.run(cmd, check=True)
    return json.loads(path.read_text())


def table(doc: dict, title: str) -> list[str]:
    rows = doc["summary"]
    lossless = next(r for r in rows if r["method"] == "lossless")
    by_loss = defaultdict(dict)
    for r in rows:
        if r["method"] != "lossless":
            by_loss[r["loss_rate_target"]][r["method"]] = r
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "lossless"]
    lines = [f"**{title}** (lossless decode: {lossless['psnr']:.2f} dB, MS-SSIM {lossless['ms_ssim']:.4f}, "
             f"{lossless['bpp_wire']:.4f} bpp on the wire)", "",
             "| loss target | tokens lost | " + " | ".join(f"{m} PSNR (Δ) / MS-SSIM / acc." for m in methods)
             + " | transformer − neighbour |",
             "|---|---|" + "---|" * len(methods) + "---|"]
    for loss, per in sorted(by_loss.items()):
        any_row = next(iter(per.values()))
        cells = []
        for m in methods:
            r = per.get(m)
            if r is None:
                cells.append("-")
                continue
            acc = r.get("token_accuracy")
            cells.append(f"{r['psnr']:.2f} ({r['psnr'] - lossless['psnr']:+.2f}) / {r['ms_ssim']:.3f} / "
                         + ("-" if acc is None else f"{acc:.3f}"))
        margin = "-"
        if "transformer" in per and "neighbour" in per:
            margin = f"{per['transformer']['psnr'] - per['neighbour']['psnr']:+.2f} dB"
        lines.append(f"| {loss:.2f} | {any_row.get('loss_rate_tokens', 0):.3f} | " + " | ".join(cells)
                     + f" | {margin} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=str(DEFAULT_IMAGES))
    ap.add_argument("--out", default="reports/recovery")
    ap.add_argument("--levels", default="1024,256,64")
    ap.add_argument("--loss", default="0.1,0.2,0.3,0.4", help="Loss rates at the base (first) level.")
    ap.add_argument("--loss-other", default="0.2,0.4", help="Loss rates at the other levels.")
    ap.add_argument("--methods", default="none,neighbour,transformer,transformer:1")
    ap.add_argument("--burst", type=float, default=4.0, help="Mean burst (packets) of the packet-loss rows.")
    ap.add_argument("--packet-seeds", type=int, default=2,
                    help="Loss patterns per image for the packet rows (24 packets an image: few events).")
    ap.add_argument("--limit", type=int, default=None, help="Only the first N images.")
    ap.add_argument("--weights", default=None, help="Codec weights folder (default: the shipped ones).")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="As simnet eval's (fp32: the same figures on every CPU).")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, level in enumerate(int(v) for v in args.levels.split(",")):
        doc = run_eval(args.images, level, args.loss if i == 0 else args.loss_other, args.methods,
                       out / f"random-k{level}.json", None, args.limit, args.weights, precision=args.precision)
        lines += table(doc, f"K = {level}, tokens lost at random") + [""]
    base = int(args.levels.split(",")[0])
    doc = run_eval(args.images, base, args.loss, args.methods, out / f"packets-k{base}.json", args.burst,
                   args.limit, args.weights, args.packet_seeds, args.precision)
    lines += table(doc, f"K = {base}, whole packets lost (Gilbert-Elliott, mean burst {args.burst:g} "
                        "packets, through the interleaving)")
    text = "\n".join(lines)
    (out / "recovery-table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
