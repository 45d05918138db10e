"""`simnet sweep`: many scenarios x loss rates x seeds, in parallel on local processes or on a
Dask cluster, merged into one results JSON and PDF.

A job is one (scenario, loss rate, seed index) point. It returns its records instead of writing
files, so the same job runs in a local process or on a remote Dask worker; the merge puts them in
job order, so the merged JSON does not depend on which worker finished first.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .results import ResultsWriter, make_meta
from .scenario import load_scenario


@dataclass(frozen=True)
class Job:
    scenario_path: str
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

    from recovery import get_method
    from codec.zoo import load_codec

    from .runner import run_scenario

    torch.set_num_threads(job.threads)
    scenario = load_scenario(Path(job.scenario_path))
    codec = load_codec(scenario.resolve(scenario.codec.weights), scenario.codec.precision)
    recoveries = {name: get_method(name) for name in scenario.receiver.recovery}
    sink = RecordList()
    info = run_scenario(scenario, codec, recoveries, sink,
                        Path(job.image_dir) if job.image_dir and job.first else None, job.seed,
                        points=[(job.rate, job.seed_index)], include_lossless=job.first)
    checksums = {"codec": codec.checksum}
    checksums.update({n: m.checksum for n, m in recoveries.items() if getattr(m, "checksum", None)})
    return {"records": sink.records, "runs": [{"scenario": scenario.name, **r} for r in info["runs"]],
            "info": {k: v for k, v in info.items() if k not in ("runs", "timings")},
            "scenario": scenario.name, "checksums": checksums}


def plan_jobs(paths: list[Path], seed: int, image_root: Path | None, threads: int) -> list[Job]:
    jobs = []
    names = set()
    for path in paths:
        scenario = load_scenario(path)  # every scenario is validated before any work starts
        if scenario.name in names:
            from .scenario import ScenarioError

            raise ScenarioError(f"{path}: name: another scenario of this sweep is also named "
                                f"{scenario.name!r}")
        names.add(scenario.name)
        first = True
        for rate in scenario.loss_rates():
            for s in range(scenario.sweep.seeds):
                image_dir = str(image_root / scenario.name) if image_root else None
                jobs.append(Job(str(path), rate, s, seed, first, image_dir, threads))
                first = False
    return jobs


def run_sweep(paths: list[Path], out_json: Path, seed: int = 0, workers: int | None = None,
              scheduler: str | None = None, command: list[str] | None = None, progress=None) -> list[dict]:
    image_root = out_json.with_name(out_json.stem + "-images")
    workers = workers or os.cpu_count() or 1
    # One thread per job whatever the worker count: convolution results can differ in the last
    # bits between thread counts, and the merged JSON must not depend on --workers.
    jobs = plan_jobs(paths, seed, image_root, threads=1)
    results: list[dict | None] = [None] * len(jobs)
    if scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            from .cli import UserError

            raise UserError("--scheduler needs dask's distributed scheduler: "
                            "pip install 'dask[distributed]'") from None
        with Client(scheduler) as client:
            futures = client.map(run_job, jobs, pure=False)
            for i, future in enumerate(futures):
                results[i] = future.result()
                if progress:
                    progress(i + 1, len(jobs))
    elif workers == 1:
        for i, job in enumerate(jobs):
            results[i] = run_job(job)
            if progress:
                progress(i + 1, len(jobs))
    else:
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
            for done, future in enumerate(as_completed(futures), 1):
                results[futures[future]] = future.result()
                if progress:
                    progress(done, len(jobs))
    checksums, scenarios, runs, info = {}, [], [], {}
    for r in results:
        checksums.update(r["checksums"])
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
            info[r["scenario"]] = r["info"]
        runs.extend(r["runs"])
    methods = []
    for path in paths:
        for m in load_scenario(path).receiver.recovery:
            if m not in methods:
                methods.append(m)
    meta = make_meta(command or ["simnet", "sweep"] + [str(p) for p in paths], seed, checksums,
                     scenarios=scenarios, methods=methods, torch_threads=1,
                     scenario={"name": out_json.stem, "description": "sweep of " + ", ".join(scenarios)})
    writer = ResultsWriter(out_json, meta)
    for r in results:
        for rec in r["records"]:
            writer.add(rec)
    first_info = info[scenarios[0]]
    return writer.close(runs=runs, run_info={**first_info, "per_scenario": info})
