"""The PDF of an equal-bandwidth comparison (simnet/experiment/compare.py), from its results JSON:
the answer in a sentence, then quality against loss rate with one line per method and a band over
seeds, for every loss process and round-trip time; frames decoded, residual loss after protection,
p95 frame latency, and where each method's bits went."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from .narrative import describe_scenario  # noqa: E402
from .report import PAGE, PERCEPTUAL, _appendix_page, _text_lines  # noqa: E402
from .results import read_results  # noqa: E402

FIELDS = (("psnr", "PSNR (dB)"), ("ms_ssim", "MS-SSIM")) + PERCEPTUAL


def _style(row: dict, methods: list[str]) -> dict:
    """A method's line, from what its summary row says it is (its codec, whether it is protected):
    generative recovery alone thick, token codecs solid, file codecs dashed."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    i = methods.index(row["method"])
    tokens = row["codec"] == "vq"
    return {"color": colours[i % len(colours)], "linewidth": 2.4 if tokens and not row["protected"] else 1.4,
            "linestyle": "-" if tokens else "--", "marker": "o", "markersize": 3}


def _panels(pdf, rows, field, label, title, band=True, fig=None, top=0.95):
    """One subplot per (loss process, RTT): `field` against loss rate, a line per method; on a
    page of its own, or below `top` on `fig` (the first page)."""
    models = sorted({r["loss_model"] for r in rows})
    rtts = sorted({r["rtt_ms"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    own = fig is None
    if own:
        fig, axes = plt.subplots(len(models), len(rtts), figsize=PAGE, squeeze=False, sharey=True)
    else:
        grid = fig.add_gridspec(len(models), len(rtts), top=top, bottom=0.07, left=0.08, right=0.97,
                                hspace=0.35, wspace=0.12)
        axes = [[fig.add_subplot(grid[i, j]) for j in range(len(rtts))] for i in range(len(models))]
    for i, model in enumerate(models):
        for j, rtt in enumerate(rtts):
            ax = axes[i][j]
            for method in methods:
                pts = sorted((r for r in rows if r["method"] == method and r["loss_model"] == model
                              and r["rtt_ms"] == rtt and r.get(field) is not None), key=lambda r: r["loss_rate_target"])
                if not pts:
                    continue
                x = [100 * r["loss_rate_target"] for r in pts]
                ax.plot(x, [r[field] for r in pts], label=method, **_style(pts[0], methods))
                if band and f"{field}_min" in pts[0]:
                    ax.fill_between(x, [r[f"{field}_min"] for r in pts], [r[f"{field}_max"] for r in pts],
                                    color=_style(pts[0], methods)["color"], alpha=0.12, linewidth=0)
            ax.set_title(f"{model}, RTT {rtt:g} ms", fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(models) - 1:
                ax.set_xlabel("target packet loss (%)")
            if j == 0:
                ax.set_ylabel(label)
    axes[0][0].legend(fontsize=6 if not own else 7, loc="lower left")
    if not own:
        fig.text(0.05, top + 0.025, title, fontsize=10, weight="bold")
        return
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    pdf.savefig(fig)
    plt.close(fig)


def _title_page(pdf, doc, path):
    meta, comp = doc["meta"], doc["comparison"]
    scen = meta.get("scenario", {})
    fig = plt.figure(figsize=PAGE)
    fig.text(0.05, 0.93, f"simnet report: {scen.get('name', path.stem)}", fontsize=20, weight="bold")
    lines = [scen.get("description", "")] + describe_scenario(scen)[:1]
    info = doc.get("run_info", {})
    budgets = info.get("budget_bytes_per_frame", [])
    if budgets:
        comparison = scen.get("comparison", {})
        scale = comparison.get("budget_scale", 1.0)
        times = f"{scale:g} times " if scale != 1 else ""
        source = (f"{times}what the VQ codec at K={scen.get('codec', {}).get('level')} sends unprotected"
                  if comparison.get("budget", "reference") == "reference"
                  else f"{times}the scenario's budget of {comparison['budget']:g} bytes")
        lines.append(f"Equal bandwidth: every method may put {min(budgets)}-{max(budgets)} bytes per frame on the "
                     f"wire (payload, headers, parities and retransmissions), {source}; the level or quality is "
                     f"chosen per frame to fit. A frame of AVIF or WebP with a packet missing after protection is "
                     f"not decodable: the receiver shows the last frame it decoded.")
    y = _text_lines(fig, [x for x in lines if x], 0.87, size=8, width=150)
    fig.text(0.05, y, "Answer", fontsize=11, weight="bold")
    y = _text_lines(fig, comp["answer"][:1], y - 0.025, size=8, width=150)
    _panels(pdf, comp["summary"], "psnr", "PSNR (dB)", "PSNR against loss at equal bandwidth, a line per method "
            "(bands: range over seeds)", fig=fig, top=y - 0.05)
    fig.text(0.05, 0.01, "The answer in every metric and the table of figures: next page. Command, versions, "
             "checksums and configuration: last page.", fontsize=7, style="italic")
    pdf.savefig(fig)
    plt.close(fig)
    _table_page(pdf, comp)


def _table_page(pdf, comp):
    fig = plt.figure(figsize=PAGE)
    fig.text(0.05, 0.95, "The answer in each metric, and the figures at 0, 20 and 40% loss", fontsize=12, weight="bold")
    y = _text_lines(fig, comp["answer"], 0.91, size=7, width=180)
    rows = comp["summary"]
    table = [["method", "loss", "RTT ms", "process", "PSNR", "MS-SSIM", "decoded", "residual", "p95 ms", "header"]]
    for r in rows:
        if r["loss_rate_target"] in (0.0, 0.2, 0.4):
            table.append([r["method"], f"{r['loss_rate_target']:.0%}", f"{r['rtt_ms']:g}",
                          r["loss_model"].replace("gilbert_elliott", "GE"), f"{r.get('psnr', float('nan')):.2f}",
                          f"{r.get('ms_ssim', float('nan')):.3f}", f"{r['frames_decoded']:.2f}",
                          f"{r['residual_loss']:.3f}", f"{r['frame_latency_ms_p95']:.0f}", f"{r['header_share']:.0%}"])
    body, per_page = table[1:], 44
    for start in range(0, len(body), per_page):
        if start:
            fig = plt.figure(figsize=PAGE)
            fig.text(0.05, 0.95, "The figures at 0, 20 and 40% loss (continued)", fontsize=12, weight="bold")
            y = 0.92
        ax = fig.add_axes([0.05, 0.03, 0.9, max(0.1, y - 0.08)])
        ax.axis("off")
        t = ax.table(cellText=body[start:start + per_page], colLabels=table[0], loc="upper left", cellLoc="right")
        t.auto_set_font_size(False)
        t.set_fontsize(5.5)
        pdf.savefig(fig)
        plt.close(fig)


def _bits_page(pdf, rows):
    """Where each method's bits went, mean per frame over every point of the comparison."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    parts = (("bits_source", "payload"), ("bits_header", "headers"), ("bits_parity", "parity"),
             ("bits_retransmitted", "retransmissions"))
    fig, ax = plt.subplots(figsize=PAGE)
    bottom = [0.0] * len(methods)
    for field, label in parts:
        vals = []
        for m in methods:
            mine = [r[field] for r in rows if r["method"] == m]
            vals.append(sum(mine) / len(mine) / 8)
        ax.bar(methods, vals, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, vals)]
    budget = sum(r["bits_budget"] for r in rows) / len(rows) / 8
    ax.axhline(budget, color="black", linestyle=":", label="budget")
    ax.set_ylabel("bytes per frame on the wire (mean over all points)")
    ax.legend()
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    fig.suptitle("Wire accounting: every method within the same budget")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    pdf.savefig(fig)
    plt.close(fig)


def render_comparison(json_path: Path, pdf_path: Path | None = None) -> Path:
    json_path = Path(json_path)
    doc = read_results(json_path)
    pdf_path = Path(pdf_path) if pdf_path else json_path.with_suffix(".pdf")
    rows = doc["comparison"]["summary"]
    with PdfPages(pdf_path) as pdf:
        _title_page(pdf, doc, json_path)
        for field, label in FIELDS:
            if any(field in r for r in rows):
                _panels(pdf, rows, field, label, f"{label} against loss at equal bandwidth (bands: range over seeds)")
        _panels(pdf, rows, "frames_decoded", "share of frames decoded", "Frames decoded (the rest show an older frame)", False)
        _panels(pdf, rows, "residual_loss", "source packets missing after protection", "Residual loss after FEC and NACK", False)
        _panels(pdf, rows, "frame_latency_ms_p95", "p95 frame latency (ms)", "When frames are shown (95th percentile)", False)
        _bits_page(pdf, rows)
        _appendix_page(pdf, doc)
    return pdf_path
