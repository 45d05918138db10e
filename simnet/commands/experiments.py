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
@device_option(None)
@precision_option(None)
def run(scenario_file: Path, out: Path, seed: int | None, no_pdf: bool, device: str | None,
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
    started = time.perf_counter()
    setup = scenario_setup(scenario)
    say_compute(setup.codec.compute)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{scenario.name}.json"
    command = ["simnet", "run", str(scenario_file)] + (["--seed", str(seed)] if seed else [])
    command += [f"--{k}={v}" for k, v in (("device", device), ("precision", precision)) if v]
    say_left_out("metrics", setup.metrics.unavailable)
    meta = make_meta(command, seed, setup.checksums, scenario=scenario.model_dump(mode="json"),
                     methods=list(setup.recoveries), metrics=setup.metrics.describe(), **setup.compute)
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
    (out / f"{scenario.name}.profile.json").write_text(json.dumps({"wall_s": round(wall, 3), **timings}, indent=1))
    out_console.print(f"wrote {json_path}")
    if not no_pdf:
        out_console.print(f"wrote {render_report(json_path)}")
    out_console.print(f"wall time {wall:.1f} s (encode {timings['encode_s']:.1f}, simulate "
                      f"{timings['simulate_s']:.1f}, recover {timings['recover_s']:.1f}, decode "
                      f"{timings['decode_s']:.1f}, metrics {timings['metrics_s']:.1f})")


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
    from ..experiment.report import render_report

    out_console.print(f"wrote {render_report(results_json, out)}")
