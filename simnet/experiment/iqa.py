"""Optional image-quality metrics from pyiqa, beside the project's own PSNR and MS-SSIM: a callable
that `codec.metrics.quality` takes as its `extra`.

pyiqa needs torchvision, which has no CPU build for the pinned torch, so it lives in its own
environment (`make iqa`, docs/metrics.md). Offline its handcrafted metrics run (psnr, ssim,
ms_ssim, fsim, vif, gmsd); those with learned weights (lpips, dists, niqe, ...) try to download
them when created. A metric that cannot be created is reported as unavailable, with the reason,
in the results' `meta.iqa`; its field is never filled in.
"""

from __future__ import annotations

import numpy as np
import torch

from codec.metrics import unit_tensor

# pyiqa's psnr and ms_ssim would overwrite the project's own fields of the same name
_RENAMED = {"psnr": "pyiqa_psnr", "ms_ssim": "pyiqa_ms_ssim"}


class MetricsUnavailable(Exception):
    """pyiqa is missing, or a metric name is not one of its metrics."""


def field_name(metric: str) -> str:
    """The results field of a pyiqa metric: its own name (`lpips`, `dists`, `fsim`, as the SPEC
    names them), except where that is already one of the project's fields."""
    return _RENAMED.get(metric, metric.replace("-", "_").replace("+", "_"))


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text[:200]}"


class IQAMetrics:
    """Callable (reference, decoded) HxWx3 uint8 -> {field: value} for the metrics that could be
    created; `unavailable` maps the others to why."""

    def __init__(self, names: list[str], device: str = "cpu"):
        try:
            import pyiqa
        except ImportError:
            raise MetricsUnavailable("pyiqa is not installed in this environment; it needs its own "
                                     "(`make iqa`, see docs/metrics.md)") from None
        self.version = getattr(pyiqa, "__version__", "unknown")
        known = set(pyiqa.list_models())
        for name in names:
            if name not in known:
                raise MetricsUnavailable(f"{name!r} is not a pyiqa metric (for example: psnr, ssim, "
                                         "ms_ssim, fsim, vif, gmsd, lpips, dists)")
        self.metrics: dict[str, object] = {}
        self.unavailable: dict[str, str] = {}
        for name in names:
            try:
                self.metrics[name] = pyiqa.create_metric(name, device=device)
            except Exception as e:  # offline weight downloads fail with urllib, requests or OS errors
                self.unavailable[name] = _one_line(e)

    @property
    def fields(self) -> list[str]:
        return [field_name(n) for n in self.metrics]

    def describe(self) -> dict:
        """For the results' meta."""
        return {"backend": "pyiqa", "version": self.version, "metrics": list(self.metrics),
                "unavailable": dict(self.unavailable)}

    @torch.no_grad()
    def __call__(self, reference: np.ndarray, decoded: np.ndarray) -> dict:
        ref, dist = unit_tensor(reference), unit_tensor(decoded)
        out = {}
        for name, metric in self.metrics.items():
            full_reference = getattr(metric, "metric_mode", "FR") == "FR"
            value = metric(dist, ref) if full_reference else metric(dist)
            out[field_name(name)] = float(torch.as_tensor(value).float().mean())
        return out
