"""The PDF report, rendered from a results JSON alone (plus the example images saved beside it),
so `simnet report NAME.json` re-renders without recomputing anything."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from PIL import Image  # noqa: E402

from .narrative import describe_scenario, headline  # noqa: E402
from .results import read_results  # noqa: E402

METHOD_COLOURS = {"transformer": "tab:green", "neighbour": "tab:blue", "none": "tab:red",
                  "previous": "tab:orange", "temporal": "tab:purple", "lossless": "black"}
PAGE = (11.0, 8.5)


def _colour(method: str) -> str:
    if method.startswith("transformer:"):  # a transformer variant (steps, decision)
        return "tab:olive"
    return METHOD_COLOURS.get(method, "tab:gray")


def _group(records, *keys):
    out = defaultdict(list)
    for r in records:
        out[tuple(r.get(k) for k in keys)].append(r)
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def _text_lines(fig, lines, y, size=9, width=130, family=None) -> float:
    """Write `lines` wrapped at `width` characters from height `y` down; returns where it ended."""
    import textwrap

    for line in lines:
        for chunk in textwrap.wrap(line, width) or [""]:
            fig.text(0.05, y, chunk, fontsize=size, family=family)
            y -= 0.022 * size / 9
        y -= 0.008
    return y


def _scenario_configs(meta: dict) -> dict[str, dict]:
    """{scenario name: its configuration}: one for `simnet run`, each of a sweep's."""
    if meta.get("scenario_configs"):
        return meta["scenario_configs"]
    scen = meta.get("scenario", {})
    return {scen["name"]: scen} if "source" in scen else {}


def _title_page(pdf, doc, path):
    """The scenario in words, the result in a sentence, and the mean quality per method and rate."""
    meta = doc["meta"]
    fig = plt.figure(figsize=PAGE)
    scen = meta.get("scenario", {})
    fig.text(0.05, 0.93, f"simnet report: {scen.get('name', path.stem)}", fontsize=20, weight="bold")
    lines = [scen["description"]] if scen.get("description") else []
    configs = _scenario_configs(meta)
    for name, config in configs.items():
        if len(configs) > 1:
            lines.append(f"{name}: {config.get('description', '')}")
        lines += describe_scenario(config) if len(configs) == 1 else []
    if not configs and meta.get("images"):
        lines.append(f"Images: {meta['images']}, codebook level K = {meta.get('codebook')}.")
    info = doc.get("run_info", {})
    if info.get("frames"):
        h, w = info.get('frame_size') or (0, 0)
        colour = (f", {info['colour_bytes_per_frame']:.0f} B of colour side channel per frame (all copies)"
                  if info.get("colour_bytes_per_frame") else "")
        if info.get("coarse_bytes_per_frame"):
            colour += f", {info['coarse_bytes_per_frame']:.0f} B of coarse layer per frame"
        lines.append(f"On the wire: {info['frames']} frames of {w}x{h} px, "
                     f"{info.get('packets_per_frame', 0):.1f} packets per frame, "
                     f"{info.get('packet_overhead_bits')} bits of header per packet{colour}.")
    y = _text_lines(fig, lines, 0.87)
    summary = doc.get("summary", [])
    results = [headline(summary, name, config) for name, config in configs.items()] or [headline(summary)]
    if len(configs) > 1:
        results = [f"{name}: {text}" for name, text in zip(configs, results)]
    fig.text(0.05, y, "Result", fontsize=11, weight="bold")
    y = _text_lines(fig, results[:6], y - 0.03, size=10)
    _summary_table(fig, summary, y)
    fig.text(0.05, 0.01, "Command, seed, versions, model checksums and the full configuration: last page.",
             fontsize=7, style="italic")
    pdf.savefig(fig)
    plt.close(fig)


def _summary_table(fig, summary, top):
    """Mean quality per method and target loss rate, the lossless ceiling first."""
    rows = [r for r in summary if r.get("method") != "lossless"]
    ceiling = [r for r in summary if r.get("method") == "lossless"]
    several = len({r.get("scenario") for r in summary}) > 1
    layered = any(r.get("cells_known") is not None for r in summary)  # a coarse layer was sent
    split = ("psnr_lost", "psnr_received") + (("cells_known",) if layered else ())
    table = [(["scenario"] if several else []) + ["method", "loss target", "packet loss", "token loss",
                                                  "PSNR dB", "MS-SSIM", "token acc.", "PSNR lost",
                                                  "PSNR kept"] + (["cells kept"] if layered else [])]
    for r in ceiling + sorted(rows, key=lambda r: (r["loss_rate_target"], r["method"])):
        table.append(([r["scenario"]] if several else []) + [
            r["method"], f"{r['loss_rate_target']:.2f}", f"{r.get('loss_rate_packets') or 0:.3f}",
            f"{r.get('loss_rate_tokens') or 0:.3f}", f"{r.get('psnr', float('nan')):.2f}",
            f"{r.get('ms_ssim', float('nan')):.4f}",
            "-" if r.get("token_accuracy") is None else f"{r['token_accuracy']:.3f}",
            *("-" if r.get(k) is None else f"{r[k]:.2f}" for k in split)])
    if len(table) > 1:
        ax = fig.add_axes([0.05, 0.04, 0.9, max(0.1, min(0.5, top - 0.08))])
        ax.axis("off")
        t = ax.table(cellText=table[1:40], colLabels=table[0], loc="upper left", cellLoc="right")
        t.auto_set_font_size(False)
        t.set_fontsize(7)


def _appendix_page(pdf, doc):
    """What reproduces the figures: command, seed, versions, checksums, the raw configuration."""
    meta = doc["meta"]
    fig = plt.figure(figsize=PAGE)
    fig.text(0.05, 0.95, "Appendix: reproducing this report", fontsize=14, weight="bold")
    lines = [f"command: {meta.get('command', '')}", f"seed: {meta.get('seed')}"]
    lines += [f"model checksum ({k}): {v}" for k, v in sorted(meta.get("model_checksums", {}).items())]
    vers = meta.get("versions", {})
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(vers.items()) if k != "platform"))
    lines += [f"{k}: {meta[k]}" for k in ("torch_threads", "precision", "device", "cpu_capability") if k in meta]
    for name, config in _scenario_configs(meta).items():
        lines.append(f"[{name}]")
        lines += [f"{key}: {config[key]}" for key in ("source", "codec", "packets", "channel", "receiver",
                                                      "sweep") if key in config]
    _text_lines(fig, lines, 0.9, size=7, width=170, family="monospace")
    pdf.savefig(fig)
    plt.close(fig)


PERCEPTUAL = (("butteraugli", "Butteraugli 3-norm (lower is better)"),
              ("ssimulacra", "SSIMULACRA (lower is better)"), ("flip", "FLIP mean error (lower is better)"),
              ("ciede2000", "mean CIEDE2000 (lower is better)"),
              ("cvvdp_jod", "ColorVideoVDP JOD (higher is better)"))


def _quality_page(pdf, records, metrics=(("psnr", "PSNR (dB)"), ("ms_ssim", "MS-SSIM")), what="Quality"):
    lossy = [r for r in records if r["method"] != "lossless" and r.get(metrics[0][0]) is not None]
    ceiling = [r for r in records if r["method"] == "lossless"]
    fig, axes = plt.subplots(1, len(metrics), figsize=PAGE, squeeze=False)
    axes = axes[0]
    several = len({r["scenario"] for r in lossy}) > 1
    styles = ["o-", "s--", "^-.", "v:", "D-", "x--"]
    scenario_style = {name: styles[i % len(styles)]
                      for i, name in enumerate(sorted({r["scenario"] for r in lossy}))}
    for ax, (metric, label) in zip(axes, metrics):
        for (scenario, *method), recs in sorted(_group(lossy, "scenario", "method").items()):
            by_rate = _group(recs, "loss_rate_target")
            xs, ys, lo, hi = [], [], [], []
            for (rate,), rr in sorted(by_rate.items()):
                per_seed = [(_mean([r["loss_rate_packets"] for r in g]), _mean([r.get(metric) for r in g]))
                            for g in _group(rr, "seed").values()]
                xs.append(_mean([p for p, _ in per_seed]))
                vals = [v for _, v in per_seed]
                ys.append(np.mean(vals))
                lo.append(np.min(vals))
                hi.append(np.max(vals))
            ax.plot(xs, ys, scenario_style[scenario], color=_colour(method[0]),
                    label=f"{scenario}: {method[0]}" if several else method[0])
            ax.fill_between(xs, lo, hi, color=_colour(method[0]), alpha=0.2)
        if ceiling and not several:
            ax.axhline(_mean([r.get(metric) for r in ceiling]), color="black", ls="--", label="lossless decode")
        ax.set_xlabel("measured packet loss rate")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7 if several else 10)
    fig.suptitle(f"{what} against measured loss (mean over frames; band: range across seeds)")
    pdf.savefig(fig)
    plt.close(fig)


def _video_pages(pdf, records):
    """A temporal stream's pages: quality against frame index at one loss rate (the picture drawn
    for video under loss), then bits per frame by frame type and the tokens lost and stale."""
    if not any("frame_type" in r for r in records):
        return
    lossy = [r for r in records if r["method"] != "lossless"]
    rates = sorted({r["loss_rate_target"] for r in lossy})
    if not rates:
        return
    rate = min(rates, key=lambda x: abs(x - 0.2))  # the reference point where it ran
    seed = min(r["seed"] for r in lossy)
    fig, axes = plt.subplots(2, 1, figsize=PAGE, sharex=True)
    ceiling = sorted((r for r in records if r["method"] == "lossless"), key=lambda r: r["frame"])
    for ax, metric, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim_db", "SSIM (dB)")):
        if ceiling and ceiling[0].get(metric) is not None:
            ax.plot([r["frame"] for r in ceiling], [r[metric] for r in ceiling], "k--", lw=1, label="no loss")
        for (method,), recs in sorted(_group([r for r in lossy if r["loss_rate_target"] == rate
                                              and r["seed"] == seed], "method").items()):
            recs = sorted(recs, key=lambda r: r["frame"])
            ax.plot([r["frame"] for r in recs], [r.get(metric) for r in recs], "-", color=_colour(method),
                    lw=1.2, label=method)
        for r in ceiling:
            if r.get("frame_type") == "I":
                ax.axvline(r["frame"], color="gray", lw=0.5, alpha=0.5)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=3)
    axes[1].set_xlabel("frame (grey lines: I-frames)")
    fig.suptitle(f"Quality against frame index at {rate:g} target loss (seed {seed})")
    pdf.savefig(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=PAGE)
    ax = axes[0]
    for kind, colour in (("I", "tab:red"), ("P", "tab:blue")):
        pts = [r for r in ceiling if r.get("frame_type") == kind]
        ax.bar([r["frame"] for r in pts], [r["bits_payload"] for r in pts], color=colour, label=f"{kind}-frames")
    ax.set_xlabel("frame")
    ax.set_ylabel("payload bits")
    ax.set_yscale("log")
    ax.set_title("Bits per frame")
    ax.grid(alpha=0.3)
    ax.legend()
    ax = axes[1]
    # which tokens are lost or stale depends on what arrived, not on the method that fills them
    first = sorted({r["method"] for r in lossy})[0]
    recs = sorted((r for r in lossy if r["method"] == first and r["loss_rate_target"] == rate and r["seed"] == seed),
                  key=lambda r: r["frame"])
    ax.bar([r["frame"] for r in recs], [r.get("tokens_lost", 0) for r in recs], color="gray", alpha=0.6,
           label="lost in this frame")
    ax.plot([r["frame"] for r in recs], [r.get("tokens_stale", 0) for r in recs], "-", color="tab:red",
            label="stale (lost earlier, not sent since)")
    ax.set_xlabel("frame")
    ax.set_ylabel("tokens")
    ax.set_title(f"Tokens lost and stale at {rate:g} target loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    pdf.savefig(fig)
    plt.close(fig)


def _loss_page(pdf, records, runs):
    lossy = [r for r in records if r["method"] != "lossless"]
    first = sorted({r["method"] for r in lossy})[:1]
    pts = [r for r in lossy if r["method"] in first]
    fig, axes = plt.subplots(1, 2, figsize=PAGE)
    ax = axes[0]
    if pts:
        x = [r["loss_rate_packets"] for r in pts]
        y = [r["loss_rate_tokens"] for r in pts]
        ax.scatter(x, y, s=8, alpha=0.5)
        m = max(max(x), max(y), 0.05)
        ax.plot([0, m], [0, m], "k--", lw=1, label="tokens = packets")
        ax.legend()
    ax.set_xlabel("packet loss rate (per frame)")
    ax.set_ylabel("token loss rate (per frame)")
    ax.set_title("Token loss against packet loss")
    ax.grid(alpha=0.3)
    ax = axes[1]
    hist = defaultdict(lambda: defaultdict(int))
    for run in runs:
        for k, v in run.get("burst_lengths", {}).items():
            hist[run["loss_rate_target"]][int(k)] += v
    for rate, h in sorted(hist.items()):
        ks = sorted(h)
        total = sum(h.values())
        ax.plot(ks, [h[k] / total for k in ks], "o-", label=f"target {rate:g}")
    ax.set_xlabel("burst length (consecutive lost packets)")
    ax.set_ylabel("share of bursts")
    ax.set_yscale("log")
    ax.set_title("Burst-length histogram")
    ax.grid(alpha=0.3)
    if hist:
        ax.legend()
    pdf.savefig(fig)
    plt.close(fig)


def _rate_latency_page(pdf, records, runs, info):
    fig, axes = plt.subplots(1, 3, figsize=PAGE)
    ceiling = [r for r in records if r["method"] == "lossless"]
    ax = axes[0]
    if ceiling:
        payload = _mean([r["bpp_payload"] for r in ceiling])
        wire = _mean([r["bpp_wire"] for r in ceiling])
        header = info.get("packet_header", "full")
        ax.bar(["payload", "headers + CRC" if header == "full" else "headers (compact)"], [payload, wire - payload],
               color=["tab:blue", "tab:orange"])
        ax.set_title(f"bits per pixel on the wire: {wire:.4f}\n(overhead {100 * (wire - payload) / wire:.1f}%,"
                     f" {info.get('packet_overhead_bits', '?')} bits/packet, {header} header)", fontsize=9)
    ax.set_ylabel("bpp")
    ax = axes[1]
    for run in runs:
        q = run.get("latency_quantiles_ms") or []
        if q:
            ax.plot(q, np.linspace(0, 1, len(q)), alpha=0.7,
                    label=f"target {run['loss_rate_target']:g}, seed {run['seed']}")
    ax.set_xlabel("packet latency (ms)")
    ax.set_ylabel("CDF")
    ax.set_title("Latency CDF (arrived packets)")
    ax.grid(alpha=0.3)
    if 0 < len(runs) <= 8:
        ax.legend(fontsize=6)
    ax = axes[2]
    by_rate = _group(runs, "loss_rate_target")
    rates = sorted(k[0] for k in by_rate)
    xs = np.arange(len(rates))
    causes = (("dropped_channel", "channel loss"), ("dropped_queue", "queue overflow"),
              ("late", "late (past deadline)"), ("corrupted", "bit errors (CRC)"))
    bottom = np.zeros(len(rates))
    for key, label in causes:
        share = np.array([_mean([r.get(key, 0) / max(1, r["packets_lost"]) for r in by_rate[(k,)]])
                          for k in rates])
        share = np.nan_to_num(share)
        ax.bar(xs, share, 0.6, bottom=bottom, label=label)
        bottom += share
    ax.set_xticks(xs, [f"{r:g}" for r in rates])
    ax.set_xlabel("target loss rate")
    ax.set_ylabel("share of lost packets")
    ax.set_title("Why packets were lost")
    ax.legend(fontsize=7)
    fig.tight_layout()
    pdf.savefig(fig)
    plt.close(fig)


def _grid_pages(pdf, doc, json_path):
    image_root = json_path.with_name(json_path.stem + "-images")
    if not image_root.is_dir():
        return
    folders = [image_root] + sorted(p for p in image_root.iterdir() if p.is_dir())
    methods = [m for m in doc["meta"].get("methods", [])]
    for folder in folders:
        scenario = folder.name if folder != image_root else None
        records = [r for r in doc["records"] if scenario is None or r["scenario"] == scenario]
        rates = sorted({r["loss_rate_target"] for r in records if r["method"] != "lossless"})
        frame = 0
        while (folder / f"f{frame}-original.png").exists():
            _grid_page(pdf, folder, frame, rates, methods, doc["meta"].get("seed"), scenario)
            frame += 1


def _grid_page(pdf, folder, frame, rates, methods, seed, scenario, tile_width=250, gap=6):
    """One frame at each loss rate (rows): original, lossless decode, lost tokens, each method.
    The tiles are resized once (Lanczos) and drawn as one image: one picture to compress in the
    PDF instead of one per tile."""
    cols = ["original", "lossless", "lost tokens"] + methods
    rows = max(1, len(rates))
    first = np.asarray(Image.open(folder / f"f{frame}-original.png"))
    tile_height = max(1, round(tile_width * first.shape[0] / first.shape[1]))
    canvas = np.full((rows * (tile_height + gap) - gap, len(cols) * (tile_width + gap) - gap, 3), 255, np.uint8)
    for i, rate in enumerate(rates):
        files = [f"f{frame}-original.png", f"f{frame}-lossless.png", f"f{frame}-r{rate:g}-mask.png"]
        files += [f"f{frame}-r{rate:g}-{m}.png" for m in methods]
        for j, name in enumerate(files):
            if (folder / name).exists():
                tile = Image.open(folder / name).convert("RGB").resize((tile_width, tile_height), Image.LANCZOS)
                y, x = i * (tile_height + gap), j * (tile_width + gap)
                canvas[y:y + tile_height, x:x + tile_width] = np.asarray(tile)
    fig = plt.figure(figsize=PAGE)
    ax = fig.add_axes([0.06, 0.03, 0.92, 0.88])
    ax.imshow(canvas, interpolation="none")
    ax.axis("off")
    for j, col in enumerate(cols):
        ax.text((j + 0.5) * (tile_width + gap), -8, col, ha="center", va="bottom", fontsize=8)
    for i, rate in enumerate(rates):
        ax.text(-8, (i + 0.5) * (tile_height + gap), f"loss {rate:g}", rotation=90, ha="right",
                va="center", fontsize=8)
    prefix = f"{scenario}: " if scenario else ""
    fig.suptitle(f"{prefix}frame {frame} at each target loss rate (seed {seed})")
    pdf.savefig(fig)
    plt.close(fig)


def render_report(json_path: Path, pdf_path: Path | None = None) -> Path:
    json_path = Path(json_path)
    doc = read_results(json_path)
    pdf_path = Path(pdf_path) if pdf_path else json_path.with_suffix(".pdf")
    records, runs = doc["records"], doc.get("runs", [])
    with PdfPages(pdf_path) as pdf:
        _title_page(pdf, doc, json_path)
        _quality_page(pdf, records)
        _video_pages(pdf, records)
        perceptual = [(f, label) for f, label in PERCEPTUAL if any(f in r for r in records)]
        for i in range(0, len(perceptual), 2):
            _quality_page(pdf, records, tuple(perceptual[i:i + 2]), "Perceptual quality")
        _loss_page(pdf, records, runs)
        _rate_latency_page(pdf, records, runs, doc.get("run_info", {}))
        _grid_pages(pdf, doc, json_path)
        _appendix_page(pdf, doc)
    return pdf_path
