"""The image-quality metrics a run reports, chosen by name (`--metrics`, a scenario's `metrics:`):
PSNR and MS-SSIM (always, codec/metrics.py) and the perceptual metrics that run offline:

| name | field | better | what runs |
|---|---|---|---|
| `butteraugli` | `butteraugli` | lower | libjxl's `butteraugli_main`, its 3-norm (Debian `libjxl-devtools`) |
| `ssimulacra` | `ssimulacra` | lower | libjxl's `ssimulacra_main` (SSIMULACRA 1; Debian `libjxl-devtools`) |
| `flip` | `flip` | lower | NVIDIA FLIP, LDR, 67 pixels per degree (`flip-evaluator` wheel) |
| `ciede2000` | `ciede2000` | lower | mean CIEDE2000 colour difference in CIELAB (scikit-image): colour drift |
| `cvvdp` | `cvvdp_jod` | higher | ColorVideoVDP, standard 4K display model (`cvvdp` package; needs torchvision, so `make iqa`'s environment) |

A metric that cannot run here (binary or package missing) is named with the reason in the
results' meta and its field is never filled in. None of them reaches the network: the binaries
read two PNG files, FLIP and ColorVideoVDP take arrays and ship their calibration.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from codec.metrics import ciede2000

BUILTIN = ("psnr", "ms_ssim")
DEFAULT = BUILTIN


class MetricError(ValueError):
    """An unknown metric name, or a metric that failed on an image pair."""


def _binary(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)


class _PairFiles:
    """The reference and the decoded images as binary PPM files for the command-line metrics (read
    and written faster than PNG, the same pixels): each
    reference once for all the decodes compared with it (a file per distinct reference, so metrics
    still running on an earlier pair keep reading theirs), each decoded image once whatever the
    number of such metrics. The folder goes when `close()` is called, or when the object does."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="simnet-metrics-"))
        self.close = weakref.finalize(self, shutil.rmtree, self.folder, True)
        self._decoded = 0

    def reference_file(self, reference: np.ndarray) -> str:
        key = hashlib.sha1(repr(reference.shape).encode() + reference.tobytes()).hexdigest()[:16]
        path = self.folder / f"reference-{key}.ppm"
        if not path.exists():
            Image.fromarray(reference).save(path)
        return str(path)

    def decoded_file(self, decoded: np.ndarray) -> Path:
        self._decoded += 1
        path = self.folder / f"decoded-{self._decoded}.ppm"
        Image.fromarray(decoded).save(path)
        return path


def _butteraugli_command(reference: str, decoded: str) -> list[str]:
    return [_binary("butteraugli_main"), reference, decoded, "--pnorm", "3"]


def _butteraugli_score(out: str) -> float:
    for line in out.splitlines():
        if line.startswith("3-norm:"):
            return float(line.split(":", 1)[1])
    raise MetricError(f"butteraugli_main printed no 3-norm ({out.strip()[:80]!r})")


def _ssimulacra_command(reference: str, decoded: str) -> list[str]:
    return [_binary("ssimulacra_main"), reference, decoded]


def _ssimulacra_score(out: str) -> float:
    try:
        return float(out.split()[0])
    except (IndexError, ValueError):
        raise MetricError(f"ssimulacra_main printed no score ({out.strip()[:80]!r})") from None


class Pending:
    """Metrics started by `MetricSet.start`: the command-line ones run as processes meanwhile;
    `result()` waits for them (once) and gives every metric's figure."""

    def __init__(self, ready: dict, running: list, decoded_path: Path | None):
        self._ready, self._running, self._path = ready, running, decoded_path

    def result(self) -> dict:
        for metric, proc in self._running:
            stdout, stderr = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise MetricError(f"{Path(proc.args[0]).name} failed ({stderr.strip()[:200] or proc.returncode})")
            self._ready[metric.field] = metric.parse(stdout)
        self._running = []
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
        return dict(self._ready)


def flip(reference: np.ndarray, decoded: np.ndarray) -> float:
    import flip_evaluator

    _, mean, _ = flip_evaluator.evaluate(reference.astype(np.float32) / 255, decoded.astype(np.float32) / 255,
                                         "LDR", applyMagma=False)
    return float(mean)


_CVVDP = {}


def cvvdp(reference: np.ndarray, decoded: np.ndarray) -> float:
    import pycvvdp
    import torch

    if "metric" not in _CVVDP:
        _CVVDP["metric"] = pycvvdp.cvvdp(display_name="standard_4k", device=torch.device("cpu"))
    jod, _ = _CVVDP["metric"].predict(decoded, reference, dim_order="HWC")
    return float(jod)


def _has_binary(name: str, package: str) -> str | None:
    return None if _binary(name) else f"{name} not found (Debian package {package}; `make install` installs it)"


def _has_module(module: str, how: str) -> str | None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"the {module} package is not installed ({how})"
    try:
        __import__(module)
    except Exception as e:  # cvvdp imports torchvision at load, which fails beside the pinned torch
        return f"{module} does not load here ({type(e).__name__}: {str(e).splitlines()[0][:120]}; {how})"
    return None


@dataclass(frozen=True)
class Metric:
    name: str
    field: str
    lower_is_better: bool
    compute: object  # (reference, decoded) -> float, in this process; None for a command-line tool
    why_unavailable: object  # () -> reason, or None where it can run
    best: float  # the value an identical pair gets
    command: object = None  # a command-line tool: (reference PNG, decoded PNG) -> argv
    parse: object = None  # and its standard output -> float


METRICS = {m.name: m for m in (
    Metric("butteraugli", "butteraugli", True, None, lambda: _has_binary("butteraugli_main", "libjxl-devtools"),
           0.0, _butteraugli_command, _butteraugli_score),
    Metric("ssimulacra", "ssimulacra", True, None, lambda: _has_binary("ssimulacra_main", "libjxl-devtools"),
           0.0, _ssimulacra_command, _ssimulacra_score),
    Metric("flip", "flip", True, flip, lambda: _has_module("flip_evaluator", "pip install flip-evaluator"), 0.0),
    Metric("ciede2000", "ciede2000", True, ciede2000, lambda: None, 0.0),
    Metric("cvvdp", "cvvdp_jod", False, cvvdp,
           lambda: _has_module("pycvvdp", "it needs torchvision: use `make iqa`'s environment"), 10.0),
)}
KNOWN = BUILTIN + tuple(METRICS)


def parse_names(text_or_list) -> list[str]:
    """'psnr,ms_ssim,flip' (or a list) -> checked names; PSNR and MS-SSIM are always included."""
    names = [n.strip() for n in (text_or_list.split(",") if isinstance(text_or_list, str) else text_or_list)
             if n.strip()]
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise MetricError(f"unknown metric {unknown[0]!r} (known: {', '.join(KNOWN)})")
    return list(dict.fromkeys(list(BUILTIN) + names))


@dataclass
class MetricSet:
    """Callable (reference, decoded) -> {field: value} for the chosen perceptual metrics that can run
    here (PSNR and MS-SSIM come from codec.metrics.quality); `unavailable` names the others and why."""

    names: list[str]
    unavailable: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.names = parse_names(self.names)
        self.active: list[Metric] = []
        for name in self.names:
            if name in METRICS:
                reason = METRICS[name].why_unavailable()
                if reason:
                    self.unavailable[name] = reason
                else:
                    self.active.append(METRICS[name])
        self._files = _PairFiles() if any(m.command for m in self.active) else None

    @property
    def fields(self) -> list[str]:
        return [m.field for m in self.active]

    def describe(self) -> dict:
        """For the results' meta."""
        return {"metrics": [n for n in self.names if n not in self.unavailable], "unavailable": dict(self.unavailable)}

    def __call__(self, reference: np.ndarray, decoded: np.ndarray) -> dict:
        return self.start(reference, decoded).result()

    def start(self, reference: np.ndarray, decoded: np.ndarray) -> Pending:
        """`self(reference, decoded)` with the command-line metrics left running as processes:
        the caller decodes the next image meanwhile and calls `.result()` when it needs the
        figures (same numbers; the cores the decoder leaves idle do the scoring)."""
        ready, running, path, ref = {}, [], None, None
        if self._files is not None:
            ref, path = self._files.reference_file(reference), self._files.decoded_file(decoded)
        for m in self.active:
            if m.command:
                running.append((m, subprocess.Popen(m.command(ref, str(path)), stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE, text=True)))
            else:
                ready[m.field] = m.compute(reference, decoded)
        return Pending(ready, running, path)

    def __bool__(self) -> bool:
        return bool(self.active)

    def close(self) -> None:
        if self._files is not None:
            self._files.close()


def combine(*extras):
    """Several `quality` extras as one (None where there are none)."""
    parts = [e for e in extras if e]
    if not parts:
        return None
    return lambda reference, decoded: {k: v for e in parts for k, v in e(reference, decoded).items()}
