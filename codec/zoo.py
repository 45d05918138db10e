"""The shipped weights (package data in codec/weights), and loading a codec from them."""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import CheckpointError
from .safe_weights import file_checksum
from .image_codec import ImageCodec
from .levels import load_levels

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
TOKENIZER_FILE = "tokenizer.safetensors"
LEVELS_FILE = "levels.safetensors"
CONCEAL_FILE = "conceal.safetensors"  # optional: the concealing decoder (codec/conceal.py)


def weights_dir() -> Path:
    """`SIMNET_WEIGHTS` if set (a folder with the two files), else the shipped weights."""
    return Path(os.environ.get("SIMNET_WEIGHTS", WEIGHTS_DIR))


def _files(folder: Path | None) -> tuple[Path, Path]:
    folder = weights_dir() if folder is None else Path(folder)
    tokenizer, levels = folder / TOKENIZER_FILE, folder / LEVELS_FILE
    for path in (tokenizer, levels):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; train with `simnet train tokenizer` and "
                                  f"`simnet train levels`, or point --weights at a folder that has it")
    return tokenizer, levels


def load_codec(folder: Path | None = None, precision: str = "auto", device: str = "auto") -> ImageCodec:
    """The codec in `folder` (None: the shipped weights, or SIMNET_WEIGHTS); `precision` and
    `device` as in codec.hardware.resolve."""
    tokenizer, levels = _files(folder)
    codec = ImageCodec.from_files(tokenizer, levels, precision=precision, device=device)
    codec.weights_folder = tokenizer.parent
    conceal = tokenizer.parent / CONCEAL_FILE
    if conceal.is_file():
        from .conceal import ConcealError, load_concealer

        try:
            codec.use_concealer(load_concealer(conceal, codec.tokenizer_checksum), file_checksum(conceal))
        except ConcealError as e:
            raise CheckpointError(str(e)) from None
    return codec


def available_levels(folder: Path | None = None) -> list[int]:
    """The codebook levels of a weights folder, read without loading the tokenizer."""
    return sorted(load_levels(_files(folder)[1]))
