"""Learning curves of training runs, from their log.jsonl, as the PNGs in docs/.

    python scripts/plot_training.py tokenizer runs/tokenizer/log.jsonl [runs/tok-dec/log.jsonl ...] --out docs/tokenizer-curve.png
    python scripts/plot_training.py recovery runs/recovery/log.jsonl --out docs/recovery-curve.png

Several tokenizer logs are drawn one after the other (a run and the runs that continued it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path: Path) -> tuple[list[dict], list[dict]]:
    train, val = [], []
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        (val if any(k.startswith("val_") for k in rec) else train).append(rec)
    return train, val


def tokenizer(logs: list[Path], out: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    lr_ax = ax1.twinx()
    offset = 0
    for i, path in enumerate(logs):
        train, val = read(path)
        steps = [offset + r["step"] for r in train]
        ax1.plot(steps, [r["l1"] for r in train], color=f"C{i}", lw=1, label=f"L1, {path.parent.name}")
        lr_ax.plot(steps, [r["lr"] for r in train], color=f"C{i}", ls=":", lw=1)
        ax2.plot([offset + r["step"] for r in val], [r["val_psnr"] for r in val], "o-", color=f"C{i}",
                 ms=3, label=path.parent.name)
        offset = steps[-1] if steps else offset
    ax1.set_xlabel("step (runs end to end)")
    ax1.set_ylabel("training L1 (pixels in [-1, 1])")
    lr_ax.set_ylabel("learning rate (dotted)")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation PSNR, dB (BSDS500 val, 24 images)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def recovery(log: Path, out: Path) -> None:
    train, val = read(log)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    ax1.set_xlabel("step")
    ax1.set_ylabel("training cross-entropy, nats (all levels)")
    ax1.grid(alpha=0.3)
    levels = sorted({int(k.split("_")[-1]) for r in val for k in r if k.startswith("val_nll_")})
    for i, k in enumerate(levels):
        ax2.plot([r["step"] for r in val], [r[f"val_nll_{k}"] for r in val], "o-", ms=3, color=f"C{i}",
                 label=f"K={k}")
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation NLL of lost tokens, nats (20% lost)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["tokenizer", "recovery"])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.kind == "tokenizer":
        tokenizer(args.logs, args.out)
    else:
        recovery(args.logs[0], args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
