"""Learning curves of training runs, from their log.jsonl, as the PNGs in docs/.

    python scripts/plot_training.py tokenizer runs/tokenizer/log.jsonl [runs/tok-cont/log.jsonl ...] [--compare runs/tok-g8/log.jsonl] --out docs/tokenizer-curve.png
    python scripts/plot_training.py recovery runs/recovery/log.jsonl --out docs/recovery-curve.png
    python scripts/plot_training.py finetune runs/colour-dec/log.jsonl runs/gan-dec/log.jsonl ... --start 21.27,0.7706,9.21 --out docs/finetune-curves.png

Several logs are drawn one after the other (a run and the runs that continued it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path: Path) -> tuple[list[dict], list[dict]]:
    train, val, _ = read_with_references(path)
    return train, val


def read_with_references(path: Path) -> tuple[list[dict], list[dict], dict]:
    """Training records, validation records, and the baseline's figures a run logged (ref_*)."""
    train, val, refs = [], [], {}
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if any(k.startswith("ref_") for k in rec):
            refs.update({k: v for k, v in rec.items() if k.startswith("ref_")})
        else:
            (val if any(k.startswith("val_") for k in rec) else train).append(rec)
    return train, val, refs


def tokenizer(logs: list[Path], out: Path, compare: list[Path] = ()) -> None:
    """`logs` end to end (a run and its continuations); each of `compare` from step 0, dashed
    (another design trained from scratch, to be read against the first run)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    lr_ax = ax1.twinx()
    offset = 0
    runs = [(p, False) for p in logs] + [(p, True) for p in compare]
    for i, (path, from_zero) in enumerate(runs):
        train, val = read(path)
        if from_zero:
            offset = 0
        steps = [offset + r["step"] for r in train]
        ax1.plot(steps, [r["l1"] for r in train], color=f"C{i}", lw=1, label=f"L1, {path.parent.name}")
        lr_ax.plot(steps, [r["lr"] for r in train], color=f"C{i}", ls=":", lw=1)
        ax2.plot([offset + r["step"] for r in val], [r["val_psnr"] for r in val], "o--" if from_zero else "o-",
                 color=f"C{i}", ms=3, label=path.parent.name + (" (from scratch)" if from_zero else ""))
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


def recovery(logs: list[Path], out: Path, title: str) -> None:
    """Runs end to end; NLL per level on the left, the mean-code-vector error on the right, with
    `neighbour`'s error on the same masks (dashed) where a run logged it."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    drew_reference = False
    for j, path in enumerate(logs):
        train, val, refs = read_with_references(path)
        levels = sorted({int(k.split("_")[-1]) for r in val for k in r if k.startswith("val_nll_")})
        for i, k in enumerate(levels):
            steps = [offset + r["step"] for r in val]
            ax1.plot(steps, [r[f"val_nll_{k}"] for r in val], "o-", ms=2, color=f"C{i}",
                     label=f"K={k}" if j == 0 else None)
            pts = [(offset + r["step"], r[f"val_mean_code_sqerr_{k}"]) for r in val
                   if f"val_mean_code_sqerr_{k}" in r]
            if pts:
                ax2.plot(*zip(*pts), "o-", ms=2, color=f"C{i}", label=f"K={k}" if j == 0 else None)
            baseline = "previous" if f"ref_previous_mean_code_sqerr_{k}" in refs else "neighbour"
            ref = refs.get(f"ref_{baseline}_mean_code_sqerr_{k}")
            if ref is not None and train:
                ax2.hlines(ref, offset, offset + train[-1]["step"], color=f"C{i}", ls="--", lw=1,
                           label=f"{baseline}, same masks (dashed)" if i == 0 and not drew_reference else None)
                drew_reference = True
        if j:
            for ax in (ax1, ax2):
                ax.axvline(offset, color="gray", ls=":", lw=1)
        offset += train[-1]["step"] if train else 0
    ax1.set_xlabel("step (runs end to end; dotted: a run continued from the previous one's weights)")
    ax1.set_ylabel("validation NLL of lost tokens, nats")
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation mean-code-vector squared error")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def finetune(logs: list[Path], out: Path, start: tuple[float, float, float] | None,
             start_label: str = "shipped decoder") -> None:
    """Decoder fine-tunes side by side, each from step 0: training L1 and (where logged) the
    discriminator's hinge loss; validation PSNR, MS-SSIM and CIEDE2000, with the starting decoder's
    figures (`start`: PSNR, MS-SSIM, CIEDE2000 and, optionally, PSNR with 20% of tokens lost)
    dashed. Runs that log the PSNR with 20% of tokens lost (loss-aware training) draw it beside
    their lossless PSNR, square markers."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for i, path in enumerate(logs):
        train, val = read(path)
        name = path.parent.name
        axes[0].plot([r["step"] for r in train], [r["l1"] for r in train], color=f"C{i}", lw=1, label=name)
        gan = [r for r in train if "d_loss" in r]
        if gan:
            axes[0].plot([r["step"] for r in gan], [r["d_loss"] / 10 for r in gan], color=f"C{i}", ls=":", lw=1,
                         label=f"{name}: discriminator hinge loss / 10")
        for ax, key in ((axes[1], "val_psnr"), (axes[2], "val_ms_ssim"), (axes[3], "val_ciede2000")):
            pts = [(r["step"], r[key]) for r in val if key in r]
            if pts:
                ax.plot(*zip(*pts), "o-", color=f"C{i}", ms=4, label=name)
        lossy = [(r["step"], r["val_psnr_0.2"]) for r in val if "val_psnr_0.2" in r]
        if lossy:
            axes[1].plot(*zip(*lossy), "s--", color=f"C{i}", ms=4, label=f"{name}: 20% of tokens lost")
    if start is not None:
        for ax, value in zip(axes[1:], start):
            ax.axhline(value, color="gray", ls="--", lw=1, label=start_label)
        if len(start) > 3:
            axes[1].axhline(start[3], color="gray", ls=":", lw=1, label=f"{start_label}, 20% of tokens lost")
    axes[0].set_ylabel("training L1 (dotted: discriminator loss / 10)")
    axes[1].set_ylabel("validation PSNR, dB (BSDS500 val, 24)")
    axes[2].set_ylabel("validation MS-SSIM")
    axes[3].set_ylabel("validation mean CIEDE2000 (lower is better)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["tokenizer", "recovery", "finetune"])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--compare", type=Path, nargs="*", default=[],
                    help="tokenizer: logs drawn from step 0 (other designs), beside the chained runs")
    ap.add_argument("--start", default=None,
                    help="finetune: the starting decoder's validation PSNR,MS-SSIM,CIEDE2000[,PSNR with "
                         "20%% of tokens lost] (dashed)")
    ap.add_argument("--title", default="recovery transformer on BSDS500 val (24 images, 20% of tokens lost at random)",
                    help="recovery: the figure's title (what it was validated on)")
    ap.add_argument("--start-label", default="shipped decoder", help="finetune: what --start's figures are")
    args = ap.parse_args(argv)
    if args.kind == "finetune":
        finetune(args.logs, args.out, tuple(float(v) for v in args.start.split(",")) if args.start else None,
                 args.start_label)
    elif args.kind == "tokenizer":
        tokenizer(args.logs, args.out, args.compare)
    else:
        recovery(args.logs, args.out, args.title)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
