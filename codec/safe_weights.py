"""Weights files without pickle: safetensors whose metadata names the file's format and holds the
model's config and free-form info as JSON. Tensors are stored in float16 to keep shipped files
small and widened to float32 on load. The tokenizer and the recovery transformer both use it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def file_checksum(path: Path) -> str:
    """sha256 of a file, hex; reports cite it so a figure names the exact weights."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(state: dict[str, torch.Tensor], path: Path, fmt: str, config: dict,
                 info: dict | None = None) -> None:
    """Write `state` to `path` atomically (a partial file never takes the final name)."""
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in state.items()}
    meta = {"format": fmt, "config": json.dumps(config), "info": json.dumps(info or {})}
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def read_weights(path: Path, fmt: str, error: type[Exception], missing: str = "no such weights file"
                 ) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """-> (float32 tensors, config, info) of a file written by `save_weights` with format `fmt`.
    Every problem raises `error` with one line naming the file; `missing` says what to do when
    there is no file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error, OSError or ValueError for bad files
        raise error(f"{path}: not a safetensors weights file ({e})") from None
    if meta.get("format") != fmt:
        raise error(f"{path}: not {fmt} weights (metadata format={meta.get('format')!r})")
    try:
        config = json.loads(meta["config"])
        info = json.loads(meta.get("info", "{}"))
    except (KeyError, ValueError) as e:
        raise error(f"{path}: bad config in the metadata ({e})") from None
    return {k: v.float() for k, v in state.items()}, config, info


def check_state(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str,
                error: type[Exception]) -> None:
    """Every key of `expected` present in `state` with the same shape, or `error` naming the key."""
    for key, ref in expected.items():
        if key not in state:
            raise error(f"{source}: missing weight '{key}'")
        if tuple(state[key].shape) != tuple(ref.shape):
            raise error(f"{source}: weight '{key}' has shape {tuple(state[key].shape)}, "
                        f"the model expects {tuple(ref.shape)}")
