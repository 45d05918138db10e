"""`simnet eval`: codec and recovery quality on a folder of images, per image and mean."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import UserError
from .common import (check_luma_option, chroma_options, console, device_option, level_option, out_console, parse_floats, precision_option,
                     print_summary, say_compute, say_left_out, weights_option)


def _methods(text: str) -> list[str]:
    from recovery import RecoveryError, parse_method

    methods = [m.strip() for m in text.split(",") if m.strip()]
    for m in methods:
        try:
            parse_method(m)
        except RecoveryError as e:
            raise UserError(f"--methods: {e}") from None
    return methods


def metric_set(names: str):
    """The --metrics set; those that cannot run here are named and left out."""
    from ..experiment.metrics import MetricError, MetricSet

    try:
        metrics = MetricSet(names)
    except MetricError as e:
        raise UserError(f"--metrics: {e}") from None
    say_left_out("--metrics", metrics.unavailable)
    return metrics


def _iqa_metrics(names: str | None):
    """pyiqa's metrics by name, or None; those that cannot run here are named and left out."""
    if not names:
        return None
    from ..experiment.iqa import IQAMetrics, MetricsUnavailable

    try:
        metrics = IQAMetrics([m.strip() for m in names.split(",") if m.strip()])
    except MetricsUnavailable as e:
        raise UserError(f"--iqa: {e}") from None
    say_left_out("--iqa", metrics.unavailable)
    return metrics


@click.command("eval")
@click.option("--images", type=Path, required=True, help="Folder of images.")
@level_option
@click.option("--loss", default="0", show_default=True, help="Token loss rates, comma separated.")
@click.option("--methods", default="none,neighbour", show_default=True,
              help="Recovery methods, comma separated: none, neighbour, transformer, or "
              "transformer:STEPS[:argmax|mmse|sample@T[:WINDOW|grid]], any of them +conceal (transformer:1 is one-shot).")
@click.option("--burst", type=float, default=None, help="Lose whole packets (Gilbert-Elliott with "
              "this mean burst length, through the codec's interleaving) instead of random tokens.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Loss patterns per rate.")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N images.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Also measure JPEG/WebP, and downscaled WebP at the VQ codec's rate.")
@click.option("--json", "json_out", type=Path, default=None, help="Write the results JSON here.")
@device_option()
@precision_option()
@click.option("--rate-lambda", type=click.FloatRange(min=0), default=None,
              help="Rate-distortion trade-off of the code assignment (0: nearest code; default: the "
                   "level's shipped value).")
@click.option("--metrics", "metric_names", default="psnr,ms_ssim", show_default=True,
              help="Image-quality metrics, comma separated: psnr, ms_ssim (always), butteraugli, "
                   "ssimulacra, flip, cvvdp (docs/metrics.md; one that cannot run here is named and left out).")
@click.option("--iqa", default=None, help="Also these pyiqa metrics, comma separated (e.g. "
              "fsim,vif,gmsd,lpips,dists); needs pyiqa's own environment (`make iqa`). A metric "
              "that cannot run here (weights not downloadable) is listed in meta.iqa, never filled in.")
@chroma_options
@click.option("--coarse", type=click.Choice(["0", "16", "64", "256"]), default="0", show_default=True,
              help="Send each token's cell at this smaller level again, as a coarse layer (protection: "
                   "a lost token is chosen among its cell's codes; needs the base level); 0 = off.")
@weights_option
def eval_cmd(images, level, loss, methods, burst, seeds, seed, limit, baselines, json_out,
             device, precision, rate_lambda, metric_names, iqa, chroma, chroma_step, luma, coarse, weights):
    """Codec (and recovery) quality on a folder of images: per image and mean.

    \b
    Example: simnet eval --images ../shared/data/kodak --codebook 1024 --loss 0,0.1,0.2 --json kodak.json
    """
    from rich.progress import Progress

    from codec.images import list_images

    from ..experiment.evaluate import EvalOptions, evaluate_folder
    from ..experiment.metrics import combine
    from ..experiment.results import ResultsWriter, make_meta
    from ..experiment.setup import check_coarse, prepare

    loss_rates = parse_floats(loss, "--loss")
    check_luma_option(chroma, luma)
    method_list = _methods(methods)
    if burst is not None and burst < 1:
        raise UserError(f"--burst: mean burst length must be >= 1 packet, got {burst}")
    list_images(images)  # a missing or empty folder fails here, before the weights load
    metrics = metric_set(metric_names)
    extra_metrics = _iqa_metrics(iqa)
    setup = prepare(weights, precision, level, method_list if any(r > 0 for r in loss_rates) else [],
                    "--codebook", device)
    coarse = int(coarse)
    check_coarse(level, coarse, setup.codec.level_sizes, "--coarse")
    say_compute(setup.codec.compute)
    opts = EvalOptions(loss_rates=loss_rates, seeds=seeds, seed=seed, burst=burst, baselines=baselines,
                       rate_lambda=rate_lambda, extra=combine(metrics, extra_metrics),
                       chroma_block=chroma or None, chroma_step=chroma_step, luma=luma, coarse=coarse)
    out = json_out or Path("reports") / f"eval-{images.name}-k{level}.json"
    shipped_lambda = setup.codec.level(level).rate_lambda
    meta = make_meta(["simnet"] + sys.argv[1:], seed, setup.checksums,
                     images=str(images), codebook=level, **setup.compute,
                     rate_lambda=rate_lambda if rate_lambda is not None else shipped_lambda,
                     burst=burst, metrics=metrics.describe(),
                     chroma_block=chroma or None, chroma_step=chroma_step if chroma else None,
                     chroma_luma=luma if chroma else None, coarse_level=coarse or None,
                     **({"iqa": extra_metrics.describe()} if extra_metrics else {}))
    mean_fields = tuple(metrics.fields) + (tuple(extra_metrics.fields) if extra_metrics else ())
    with ResultsWriter(out, meta, mean_fields) as writer, Progress(console=console, transient=True) as progress:
        task = progress.add_task("evaluating", total=None)
        evaluate_folder(setup, images, opts, writer,
                        lambda i, n, name: progress.update(task, completed=i, total=n, description=name),
                        limit)
    metrics.close()
    print_summary(writer.summary(), mean_fields)
    out_console.print(f"wrote {out}")
