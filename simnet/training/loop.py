"""The resumable training loop that the tokenizer and the recovery transformer share.

A run lives in one folder: OUT/last.pt (the full training state, written every few minutes, at the
end and when the time limit stops the run), OUT/log.jsonl (the learning curve) and
OUT/best.safetensors (the weights with the best validation score). Running the same command again
resumes from OUT/last.pt. The learning rate warms up, holds, then decays linearly from
`decay_start` to `steps` (warmup-stable-decay): the decay can be placed once the run's speed is
known, and a resumed run may move it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from codec.hardware import Compute, resolve


@dataclass
class RunConfig:
    """The options every training run has; each model's config adds its own and its defaults."""
    out: str = "runs/train"
    steps: int = 3000
    decay_start: int = 2000
    warmup: int = 200
    batch: int = 16
    crop: int = 16
    lr: float = 5e-4
    min_lr_ratio: float = 0.05
    seed: int = 0
    threads: int = 2
    checkpoint_minutes: float = 5.0
    val_every: int = 250
    max_minutes: float = 0.0  # stop (after checkpointing) once this much wall time has passed; 0 = never
    init: str | None = None  # start a new run from these weights (e.g. the shipped ones), fresh optimizer
    device: str = "auto"  # codec.hardware.resolve: CUDA where there is a GPU
    precision: str = "auto"  # bf16 autocast only where it is native to the device

    @property
    def schedule(self) -> "Schedule":
        return Schedule(self.lr, self.steps, self.decay_start, self.warmup, self.min_lr_ratio)

    def start(self, log: Callable[[str], None] = print) -> "TrainingRun":
        run = TrainingRun(Path(self.out), self.threads, self.seed, log, self.checkpoint_minutes,
                          self.max_minutes, resolve(self.device, self.precision))
        log(f"compute: {run.compute.summary()}")
        return run


@dataclass(frozen=True)
class Schedule:
    lr: float
    steps: int
    decay_start: int
    warmup: int
    min_lr_ratio: float

    def at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if step < self.decay_start:
            return self.lr
        frac = min(1.0, (step - self.decay_start) / max(1, self.steps - self.decay_start))
        return self.lr * (1 - frac * (1 - self.min_lr_ratio))


def log_line(rec: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())


class TrainingRun:
    """One run folder: the state to resume from, the log, the checkpoints and the time limit.

    The model-specific parts come in as callables: `train_step(lr) -> {name: scalar}` (averaged
    over each logging window), `validate() -> record`, `score(record) -> float` (higher is
    better), `save_best(record)`, and `snapshot(step, best) -> dict` (what last.pt holds)."""

    def __init__(self, out: Path, threads: int, seed: int, log: Callable[[str], None] = print,
                 checkpoint_minutes: float = 5.0, max_minutes: float = 0.0, compute: Compute | None = None):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.log = log
        self.compute = compute or Compute("cpu", "fp32")
        self.checkpoint_minutes, self.max_minutes = checkpoint_minutes, max_minutes
        self.state_path = self.out / "last.pt"
        # our own checkpoint (optimizer state, generator states): not a file from elsewhere
        # (tensors come back on the CPU: a run may resume on another device)
        self.resumed: dict | None = (torch.load(self.state_path, weights_only=False, map_location="cpu")
                                     if self.state_path.exists() else None)
        self._logf = None

    def record(self, rec: dict, flush: bool = True) -> None:
        """Append `rec` to log.jsonl and print it as one line."""
        if self._logf is None:
            self._logf = (self.out / "log.jsonl").open("a")
        self._logf.write(json.dumps(rec) + "\n")
        if flush:
            self._logf.flush()
        self.log(log_line(rec))

    def loop(self, optimizer: torch.optim.Optimizer, schedule: Schedule, step: int, best: float,
             train_step: Callable[[float], dict[str, float]], validate: Callable[[], dict],
             score: Callable[[dict], float], save_best: Callable[[dict], None],
             snapshot: Callable[[int, float], dict], val_every: int, log_every: int = 50,
             window_extra: Callable[[], dict] | None = None) -> Path:
        """Train from `step` to `schedule.steps` (or the time limit); returns best.safetensors."""
        started = last_checkpoint = time.time()
        window: dict[str, float] = {}
        count = 0
        while step < schedule.steps:
            lr = schedule.at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            scalars = train_step(lr)
            step += 1
            for k, v in scalars.items():
                window[k] = window.get(k, 0.0) + v
            count += 1
            if step % log_every == 0:
                rec = {"step": step, "lr": lr, "minutes": (time.time() - started) / 60,
                       **{k: v / count for k, v in window.items()},
                       **(window_extra() if window_extra else {})}
                self.record(rec)
                window, count = {}, 0
            if step % val_every == 0 or step == schedule.steps:
                rec = {"step": step, **validate()}
                self.record(rec)
                if (value := score(rec)) > best:
                    best = value
                    save_best(rec)
            timeout = self.max_minutes > 0 and time.time() - started > self.max_minutes * 60
            if (time.time() - last_checkpoint > self.checkpoint_minutes * 60 or step == schedule.steps
                    or timeout):
                torch.save(snapshot(step, best), self.out / "last.tmp")
                (self.out / "last.tmp").replace(self.state_path)
                last_checkpoint = time.time()
            if timeout:
                self.log(f"stopping after {self.max_minutes} minutes at step {step}; run again to resume")
                break
        if self._logf is not None:
            self._logf.close()
        return self.out / "best.safetensors"


NO_BEST = -math.inf
