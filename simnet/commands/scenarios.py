"""`simnet run`, `simnet sweep`, `simnet report`: scenarios through the simulated network, and
their PDF."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import UserError
from .common import (console, device_option, out_console, precision_option, print_summary, say_compute,
                     say_left_out)


def _progress_columns(label: str | None = None):
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    first = TextColumn(label) if label else TextColumn("{task.description:>10}")
    return first, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()


@click.command()
@click.argument("scenario_file", type=Path)
@click.option("--out", type=Path, default=Path("reports"), show_default=True,
              help="Folder for NAME.json, NAME.pdf and NAME-images/.")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--no-pdf", is_flag=True, help="Write the JSON only.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads (default: one per core). Records are identical bit for bit for the "
                   "same thread count: a sweep's jobs use 1, so `--threads 1` reproduces a sweep.")
@device_option(None)
@precision_option(None)
def run(scenario_file: Path, out: Path, seed: int | None, no_pdf: bool, threads: int | None, device: str | None,
        precision: str | None):
    """Run one scenario: progress, a summary table, then OUT/NAME.json and OUT/NAME.pdf.

    \b
    Example: simnet run scenarios/lossy20.yaml --out reports
    """
    import time

    from rich.progress import Progress

    from ..experiment.report import render_report
    from ..experiment.results import ResultsWriter, make_meta
    from ..experiment.runner import run_scenario
    from ..experiment.scenario import load_scenario
    from ..experiment.setup import scenario_setup

    scenario = load_scenario(scenario_file).with_compute(device, precision)
    seed = scenario.seed if seed is None else seed
    if threads:
        import torch

        torch.set_num_threads(threads)
    started = time.perf_counter()
    setup = scenario_setup(scenario)
    say_compute(setup.codec.compute)
    say_left_out("metrics", setup.metrics.unavailable)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{scenario.name}.json"
    command = ["simnet", "run", str(scenario_file)] + (["--seed", str(seed)] if seed else [])
    command += [f"--{k}={v}" for k, v in (("threads", threads), ("device", device), ("precision", precision)) if v]
    methods = ([m.name for m in scenario.comparison.methods] if scenario.comparison is not None
               else list(setup.recoveries))
    meta = make_meta(command, seed, setup.checksums, scenario=scenario.model_dump(mode="json"),
                     methods=methods, metrics=setup.metrics.describe(), **setup.compute)
    if scenario.comparison is not None:
        return _run_comparison(scenario, setup, meta, json_path, seed, no_pdf, started)
    fields = tuple(setup.metrics.fields)
    with ResultsWriter(json_path, meta, fields) as writer, Progress(*_progress_columns(), console=console,
                                                           transient=True) as progress:
        tasks = {}

        def report(stage, i, n):
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=n)
            progress.update(tasks[stage], completed=i)

        info = run_scenario(scenario, setup, writer, out / f"{scenario.name}-images", seed, report)
        timings = info.pop("timings")
        summary = writer.close(runs=info.pop("runs"), run_info=info)
    setup.metrics.close()
    wall = time.perf_counter() - started
    print_summary(summary, fields)
    _finish(out / f"{scenario.name}.profile.json", json_path, wall, timings, None if no_pdf else render_report)


def _finish(profile: Path, json_path: Path, wall: float, timings: dict, render) -> None:
    """A run's last lines: the profile beside the JSON, the PDF (`render`, unless None), wall time."""
    profile.write_text(json.dumps({"wall_s": round(wall, 3), **timings}, indent=1))
    out_console.print(f"wrote {json_path}")
    if render is not None:
        out_console.print(f"wrote {render(json_path)}")
    out_console.print(f"wall time {wall:.1f} s (encode {timings['encode_s']:.1f}, simulate "
                      f"{timings['simulate_s']:.1f}, recover {timings['recover_s']:.1f}, decode "
                      f"{timings['decode_s']:.1f}, metrics {timings['metrics_s']:.1f})")


def _run_comparison(scenario, setup, meta: dict, json_path: Path, seed: int, no_pdf: bool, started: float):
    """`run` for a scenario with `comparison:`: methods side by side at equal bandwidth."""
    import time

    from rich.progress import Progress

    from ..experiment.compare import answer, run_comparison, summarise
    from ..experiment.compare_report import render_comparison
    from ..experiment.results import ResultsWriter

    fields = ("psnr", "ms_ssim") + tuple(setup.metrics.fields)
    records = []
    keys = ("scenario", "method", "loss_model", "rtt_ms", "loss_rate_target")
    with ResultsWriter(json_path, meta, fields + ("residual_loss", "frame_latency_ms", "bits_wire"), keys) as writer, \
            Progress(*_progress_columns(), console=console, transient=True) as progress:
        task = progress.add_task("simulate", total=None)

        class Collect:
            def add(self, record):
                records.append(record)
                writer.add(record)

        info = run_comparison(scenario, setup, Collect(), seed,
                              lambda stage, i, n: progress.update(task, completed=i, total=n))
        timings = info.pop("timings")
        rows = summarise(records, fields)
        sentences = [answer(rows, f) for f in fields]
        writer.close(runs=info.pop("runs"), run_info=info, comparison={"summary": rows, "answer": sentences})
    setup.metrics.close()
    wall = time.perf_counter() - started
    _print_comparison(rows)
    out_console.print(sentences[0])
    _finish(json_path.with_name(f"{scenario.name}.profile.json"), json_path, wall, timings,
            None if no_pdf else render_comparison)


def _print_comparison(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="equal bandwidth: mean over frames and seeds")
    for col in ("method", "process", "RTT ms", "loss", "PSNR dB", "MS-SSIM", "decoded", "residual", "p95 ms"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["method"], r["loss_model"].replace("gilbert_elliott", "GE"), f"{r['rtt_ms']:g}",
                      f"{r['loss_rate_target']:.2f}", f"{r['psnr']:.2f}", f"{r['ms_ssim']:.4f}",
                      f"{r['frames_decoded']:.2f}", f"{r['residual_loss']:.3f}", f"{r['frame_latency_ms_p95']:.0f}")
    out_console.print(table)


@click.command()
@click.argument("scenario_files", type=Path, nargs=-1, required=True)
@click.option("--out", type=Path, default=Path("reports/sweep.json"), show_default=True,
              help="Merged results JSON; the PDF goes beside it.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local processes, or the workers of --scheduler local (default: one per core).")
@click.option("--scheduler", default=None,
              help="Run the jobs on Dask: a scheduler address (tcp://HOST:8786), or 'local' for a "
                   "cluster of worker processes on this machine.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-pdf", is_flag=True, help="Write the JSON only.")
@device_option(None)
@precision_option(None)
def sweep(scenario_files, out, workers, scheduler, seed, no_pdf, device, precision):
    """Many scenarios x loss rates x seeds in parallel; one merged JSON and PDF.

    \b
    Example: simnet sweep scenarios/*.yaml --out reports/all.json
    Example: simnet sweep scenarios/lossy20.yaml --scheduler tcp://10.0.0.5:8786
    """
    from rich.progress import Progress

    from ..experiment.report import render_report
    from ..experiment.sweep import run_sweep

    if out.suffix != ".json":
        raise UserError(f"--out {out}: expected a .json path")
    with Progress(*_progress_columns("sweep"), console=console, transient=True) as progress:
        task = progress.add_task("sweep", total=None)
        summary = run_sweep(list(scenario_files), out, seed, workers, scheduler,
                            ["simnet", "sweep"] + [str(p) for p in scenario_files]
                            + [f"--{k}={v}" for k, v in (("device", device), ("precision", precision)) if v],
                            lambda i, n: progress.update(task, completed=i, total=n),
                            device=device, precision=precision)
    print_summary(summary)
    out_console.print(f"wrote {out}")
    if not no_pdf:
        out_console.print(f"wrote {render_report(out)}")


@click.command()
@click.argument("results_json", type=Path)
@click.option("--out", type=Path, default=None, help="PDF path (default: beside the JSON).")
def report(results_json: Path, out: Path | None):
    """Re-render the PDF of a results JSON, without recomputing anything.

    \b
    Example: simnet report reports/lossy20.json
    """
    from ..experiment.compare_report import render_comparison
    from ..experiment.report import render_report
    from ..experiment.results import read_results

    render = render_comparison if "comparison" in read_results(results_json) else render_report
    out_console.print(f"wrote {render(results_json, out)}")
