"""The Kodak table of docs/models.md and docs/metrics.md: `simnet eval` at every codebook level on
Kodak (evaluation only; nothing is tuned on it), with the classical baselines at the base level,
in every chosen metric, as markdown; and, with --loss, the recovery rows (mean over images, and
how each method compares with `neighbour`).

    python benchmarks/kodak_table.py [--images ../shared/data/kodak] [--out reports/kodak]
        [--metrics psnr,ms_ssim,butteraugli,ssimulacra,flip] [--loss 0.2,0.4] [--reuse]

--reuse renders from the JSONs already in --out (kodak-kK.json) instead of running the evals.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

COLUMNS = (("psnr", "PSNR dB", ".2f"), ("ms_ssim", "MS-SSIM", ".4f"), ("butteraugli", "Butteraugli 3-norm", ".3f"),
           ("ssimulacra", "SSIMULACRA", ".4f"), ("flip", "FLIP", ".4f"), ("cvvdp_jod", "CVVDP JOD", ".3f"))


def _cells(row: dict) -> str:
    return " | ".join(f"{row[f]:{fmt}}" if row.get(f) is not None else "-" for f, _, fmt in COLUMNS)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=str(Path(__file__).resolve().parents[2] / "shared/data/kodak"))
    ap.add_argument("--out", default="reports/kodak")
    ap.add_argument("--levels", default="1024,256,64,16")
    ap.add_argument("--metrics", default="psnr,ms_ssim")
    ap.add_argument("--loss", default=None, help="Token loss rates for the recovery rows (base level only).")
    ap.add_argument("--methods", default="none,neighbour,transformer")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, recovery = [], []
    for i, k in enumerate(int(v) for v in args.levels.split(",")):
        path = out / f"kodak-k{k}.json"
        if not (args.reuse and path.exists()):
            cmd = [sys.executable, "-m", "simnet.cli", "eval", "--images", args.images, "--codebook", str(k),
                   "--metrics", args.metrics, "--json", str(path)] + ([] if i == 0 else ["--no-baselines"])
            if i == 0 and args.loss:
                cmd += ["--loss", "0," + args.loss, "--methods", args.methods]
            cmd += ["--weights", args.weights] if args.weights else []
            subprocess.run(cmd, check=True)
        doc = json.loads(path.read_text())
        for row in doc["summary"]:
            if row["loss_rate_target"] > 0:
                recovery.append({**row, "K": k})
                continue
            recs = [r for r in doc["records"] if r["method"] == row["method"]]
            extra = {"K": k if row["method"] == "lossless" else "-"}
            if row["method"] == "lossless":
                extra["bits/xent"] = sum(r["bits_over_cross_entropy"] for r in recs) / len(recs)
            rows.append({**row, **extra})
    head = " | ".join(label for _, label, _ in COLUMNS)
    lines = [f"| method | K | bpp (file) | {head} | bits / cross-entropy |",
             "|---|---|---|" + "---|" * len(COLUMNS) + "---|"]
    for r in rows:
        xent = f"{r['bits/xent']:.4f}" if "bits/xent" in r else "-"
        lines.append(f"| {r['method']} | {r['K']} | {r['bpp_wire']:.4f} | {_cells(r)} | {xent} |")
    if recovery:
        lines += ["", f"| method | K | token loss | {head} |", "|---|---|---|" + "---|" * len(COLUMNS)]
        for r in sorted(recovery, key=lambda r: (r["loss_rate_target"], r["method"])):
            lines.append(f"| {r['method']} | {r['K']} | {r['loss_rate_target']:.2f} | {_cells(r)} |")
    table = "\n".join(lines)
    (out / "kodak-table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
