"""`simnet sweep`: many scenarios x loss rates x seeds, in parallel on local processes or on a
Dask cluster, merged into one results JSON and PDF.

A job is one (scenario, loss rate, seed index) point. It returns its records instead of writing
files, so the same job runs in a local process or on a remote Dask worker; the merge puts them in
job order, so the merged JSON does not depend on which worker finished first or where it ran.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .results import ResultsWriter, make_meta
from .scenario import Scenario, ScenarioError, load_scenario
from .setup import check_scenario, scenario_setup

LOCAL_CLUSTER = "local"  # --scheduler local: a Dask cluster of worker processes on this machine


@dataclass(frozen=True)
class Job:
    scenario: Scenario
    rate: float
    seed_index: int
    seed: int
    first: bool  # the scenario's first job also writes the lossless records and example images
    image_dir: str | None
    threads: int = 1


class RecordList:
    def __init__(self):
        self.records: list[dict] = []

    def add(self, record: dict) -> None:
        self.records.append(record)


def run_job(job: Job) -> dict:
    import torch

    from .runner import run_scenario

    torch.set_num_threads(job.threads)
    setup = scenario_setup(job.scenario)
    sink = RecordList()
    info = run_scenario(job.scenario, setup, sink,
                        Path(job.image_dir) if job.image_dir and job.first else None, job.seed,
                        points=[(job.rate, job.seed_index)], include_lossless=job.first)
    setup.metrics.close()
    return {"records": sink.records, "runs": [{"scenario": job.scenario.name, **r} for r in info["runs"]],
            "info": {k: v for k, v in info.items() if k not in ("runs", "timings")},
            "scenario": job.scenario.name, "checksums": setup.checksums, "compute": setup.compute,
            "metrics": setup.metrics.describe(), "metric_fields": setup.metrics.fields}


def load_scenarios(paths: list[Path], device: str | None = None, precision: str | None = None
                   ) -> list[Scenario]:
    """Every scenario loaded and checked (schema, files, codebook level) before any work starts;
    `device` and `precision` (the command line's) replace the files' where given."""
    scenarios, names = [], set()
    for path in paths:
        scenario = load_scenario(path).with_compute(device, precision)
        if scenario.name in names:
            raise ScenarioError(f"{path}: name: another scenario of this sweep is also named "
                                f"{scenario.name!r}")
        names.add(scenario.name)
        if scenario.comparison is not None:
            raise ScenarioError(f"{path}: comparison: an equal-bandwidth comparison runs with `simnet run`, "
                                f"not in a sweep")
        check_scenario(scenario)
        scenarios.append(scenario)
    return scenarios


def plan_jobs(scenarios: list[Scenario], seed: int, image_root: Path | None, threads: int) -> list[Job]:
    jobs = []
    for scenario in scenarios:
        first = True
        for rate in scenario.loss_rates():
            for s in range(scenario.sweep.seeds):
                image_dir = str(image_root / scenario.name) if image_root else None
                jobs.append(Job(scenario, rate, s, seed, first, image_dir, threads))
                first = False
    return jobs


def _run_on_dask(jobs: list[Job], scheduler: str, workers: int, progress) -> list[dict]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UserError("--scheduler needs dask's distributed scheduler: "
                        "pip install 'dask[distributed]'") from None
    cluster = None
    if scheduler == LOCAL_CLUSTER:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    try:
        try:
            client = Client(cluster or scheduler)
        except OSError as e:  # an address nobody answers at; a job's own OSError is not this
            raise UserError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from None
        with client:
            futures = client.map(run_job, jobs, pure=False)
            results = []
            for i, future in enumerate(futures):
                results.append(future.result())
                if progress:
                    progress(i + 1, len(jobs))
            return results
    finally:
        if cluster is not None:
            cluster.close()


def _run_locally(jobs: list[Job], workers: int, progress) -> list[dict]:
    if workers == 1:
        results = []
        for i, job in enumerate(jobs):
            results.append(run_job(job))
            if progress:
                progress(i + 1, len(jobs))
        return results
    import multiprocessing

    results: list[dict | None] = [None] * len(jobs)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()
            if progress:
                progress(done, len(jobs))
    return results


def run_sweep(paths: list[Path], out_json: Path, seed: int = 0, workers: int | None = None,
              scheduler: str | None = None, command: list[str] | None = None, progress=None,
              device: str | None = None, precision: str | None = None) -> list[dict]:
    """Run every job, locally or on Dask (`scheduler`: an address, or "local" for a cluster on
    this machine), and merge them into `out_json`; returns the summary."""
    scenarios = load_scenarios(paths, device, precision)
    image_root = out_json.with_name(out_json.stem + "-images")
    workers = workers or os.cpu_count() or 1
    # One thread per job whatever the worker count: convolution results can differ in the last
    # bits between thread counts, and the merged JSON must not depend on --workers.
    jobs = plan_jobs(scenarios, seed, image_root, threads=1)
    results = (_run_on_dask(jobs, scheduler, workers, progress) if scheduler
               else _run_locally(jobs, workers, progress))
    return _merge(results, scenarios, paths, out_json, seed, command)


def _merge(results: list[dict], scenarios: list[Scenario], paths: list[Path], out_json: Path,
           seed: int, command: list[str] | None) -> list[dict]:
    checksums, names, runs, info, computes, fields, metrics = {}, [], [], {}, [], [], {}
    for r in results:
        fields += [f for f in r["metric_fields"] if f not in fields]
        metrics.setdefault(r["scenario"], r["metrics"])
        if r["compute"] not in computes:
            computes.append(r["compute"])
        checksums.update(r["checksums"])
        if r["scenario"] not in names:
            names.append(r["scenario"])
            info[r["scenario"]] = r["info"]
        runs.extend(r["runs"])
    methods = []
    for scenario in scenarios:
        methods += [m for m in scenario.receiver.recovery if m not in methods]
    meta = make_meta(command or ["simnet", "sweep"] + [str(p) for p in paths], seed, checksums,
                     scenarios=names, methods=methods, torch_threads=1,
                     scenario={"name": out_json.stem, "description": "sweep of " + ", ".join(names)},
                     scenario_configs={s.name: s.model_dump(mode="json") for s in scenarios},
                     metrics=metrics,
                     # one machine kind: its figures; several (a mixed cluster): each, listed
                     **(computes[0] if len(computes) == 1 else {"computes": computes}))
    writer = ResultsWriter(out_json, meta, tuple(fields))
    for r in results:
        for rec in r["records"]:
            writer.add(rec)
    return writer.close(runs=runs, run_info={**info[names[0]], "per_scenario": info})
