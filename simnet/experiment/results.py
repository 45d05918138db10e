"""The results JSON shared by `simnet run`, `simnet sweep` and `simnet eval`.

    {"meta": {...}, "records": [{...}, ...], "summary": [{...}, ...]}

One record per (image or frame, loss rate, seed, method); `summary` holds means per
(scenario, method, codebook, loss_rate_target). Records are streamed to disk as they come, so a
long run's memory does not grow with its length; the summary is computed from running sums.
Floats are written with repr precision, so the same inputs give the same file, bit for bit.
"""

from __future__ import annotations

import json
import math
import platform
import sys
from collections import defaultdict
from pathlib import Path

RECORD_FIELDS = ("scenario", "image", "seed", "loss_rate_target", "loss_rate_packets",
                 "loss_rate_tokens", "method", "codebook", "bpp_payload", "bpp_wire", "psnr",
                 "ms_ssim", "latency_ms_p50", "latency_ms_p95")
SUMMARY_KEYS = ("scenario", "method", "codebook", "loss_rate_target")
_MEAN_FIELDS = ("loss_rate_packets", "loss_rate_tokens", "bpp_payload", "bpp_wire", "psnr", "ms_ssim",
                "latency_ms_p50", "latency_ms_p95", "token_accuracy", "late_share", "psnr_lost",
                "psnr_received", "cells_known",
                # a temporal stream's (averaged only where its records have them)
                "ssim", "ssim_db", "bits_payload", "bits_wire", "changed_share", "tokens_lost", "tokens_stale",
                "frames_to_repair")


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("simnet", "torch", "numpy", "constriction", "simpy", "pillow", "matplotlib"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def make_meta(command: list[str], seed: int | None, checksums: dict, **extra) -> dict:
    """Everything needed to reproduce a figure. Results are bit-for-bit reproducible for the same
    versions and the same torch thread count (recorded: reduction order may change with it)."""
    import torch

    extra.setdefault("torch_threads", torch.get_num_threads())
    return {"command": " ".join(command), "seed": seed, "versions": versions(),
            "model_checksums": checksums, **extra}


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class ResultsWriter:
    """Streams records into OUT as they are produced; `close()` appends the summary."""

    def __init__(self, path: Path, meta: dict, mean_fields: tuple[str, ...] = (),
                 keys: tuple[str, ...] = SUMMARY_KEYS):
        """`mean_fields`: further numeric record fields to average in the summary (optional metrics);
        `keys`: the record fields the summary groups by."""
        self.path = Path(path)
        self.keys = keys
        self._mean_fields = _MEAN_FIELDS + tuple(f for f in mean_fields if f not in _MEAN_FIELDS)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_suffix(self.path.suffix + ".partial")
        self._f = self._tmp.open("w")
        self._f.write('{"meta": ' + json.dumps(meta, sort_keys=True) + ',\n "records": [\n')
        self._n = 0
        self.closed = False
        self._sums: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
        self._counts: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))

    def add(self, record: dict) -> None:
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            raise ValueError(f"result record lacks {missing}")
        record = {k: _clean(v) for k, v in record.items()}
        self._f.write(("  " if self._n == 0 else " ,") + json.dumps(record, sort_keys=True) + "\n")
        self._n += 1
        key = tuple(record[k] for k in self.keys)
        for f in self._mean_fields:
            v = record.get(f)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self._sums[key][f] += v
                self._counts[key][f] += 1
        self._counts[key]["records"] += 1

    def summary(self) -> list[dict]:
        rows = []
        for key in sorted(self._sums.keys() | self._counts.keys(), key=lambda k: tuple(map(str, k))):
            row = dict(zip(self.keys, key))
            row["records"] = self._counts[key]["records"]
            for f, total in self._sums[key].items():
                row[f] = total / self._counts[key][f]
            rows.append(row)
        return rows

    def close(self, **sections) -> list[dict]:
        """Finish the file: the summary, then any extra top-level sections (e.g. runs)."""
        summary = self.summary()
        self._f.write(' ],\n "summary": ' + json.dumps(summary, sort_keys=True))
        for name, value in sections.items():
            self._f.write(",\n " + json.dumps(name) + ": " + json.dumps(value, sort_keys=True))
        self._f.write("\n}\n")
        self._f.close()
        self._tmp.replace(self.path)
        self.closed = True
        return summary

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if self.closed:
            return
        if exc_type is None:
            self.close()
        else:  # keep what was computed, but never under the final name
            self._f.close()


class ResultsError(ValueError):
    pass


def read_results(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: not a results JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list) or "meta" not in doc:
        raise ResultsError(f"{path}: not a simnet results file (needs 'meta' and 'records')")
    for i, rec in enumerate(doc["records"]):
        if not isinstance(rec, dict):
            raise ResultsError(f"{path}: record {i} is not an object")
        missing = [f for f in RECORD_FIELDS if f not in rec]
        if missing:
            raise ResultsError(f"{path}: record {i} lacks {missing[0]!r}")
    return doc
