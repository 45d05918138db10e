"""The Kodak table of docs/models.md: `simnet eval` at every codebook level on Kodak (evaluation
only; nothing is tuned on it), with the classical baselines at the base level, as markdown.

    python benchmarks/kodak_table.py [--images ../shared/data/kodak] [--out reports/kodak]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=str(Path(__file__).resolve().parents[2] / "shared/data/kodak"))
    ap.add_argument("--out", default="reports/kodak")
    ap.add_argument("--levels", default="1024,256,64,16")
    ap.add_argument("--weights", default=None)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, k in enumerate(int(v) for v in args.levels.split(",")):
        path = out / f"kodak-k{k}.json"
        cmd = [sys.executable, "-m", "simnet.cli", "eval", "--images", args.images, "--codebook", str(k),
               "--json", str(path)] + ([] if i == 0 else ["--no-baselines"])
        if args.weights:
            cmd += ["--weights", args.weights]
        subprocess.run(cmd, check=True)
        doc = json.loads(path.read_text())
        for row in doc["summary"]:
            recs = [r for r in doc["records"] if r["method"] == row["method"]]
            extra = {}
            if row["method"] == "lossless":
                extra["bits/xent"] = sum(r["bits_over_cross_entropy"] for r in recs) / len(recs)
                extra["bpp_uniform"] = sum(r["bpp_uniform"] for r in recs) / len(recs)
            rows.append({"method": row["method"], "K": k if row["method"] == "lossless" else "-",
                         "bpp": row["bpp_wire"], "psnr": row["psnr"], "ms_ssim": row["ms_ssim"], **extra})
    lines = ["| method | K | bpp (file) | PSNR dB | MS-SSIM | bits / cross-entropy | uniform-coding bpp |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['K']} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['ms_ssim']:.4f} | "
                     + (f"{r['bits/xent']:.4f} | {r['bpp_uniform']:.4f} |" if "bits/xent" in r else "- | - |"))
    table = "\n".join(lines)
    (out / "kodak-table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
