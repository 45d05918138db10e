"""Image files in and out, and the training/validation image sets.

The data lives outside the project (../shared/data, see its README); Kodak is evaluation only and
is never listed by `training_images`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


class ImageError(ValueError):
    """An input that is not a readable image; the message names the file."""


def default_data_root() -> Path:
    """`SIMNET_DATA` if set, else ../shared/data beside the project checkout."""
    env = os.environ.get("SIMNET_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def list_images(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def load_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB, or ImageError naming the file."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: not a readable image ({type(e).__name__})") from None


def save_rgb(array: np.ndarray, path: Path, compress_level: int = 6) -> None:
    """PNG (or what the suffix names); `compress_level` 1 for working images read back at once."""
    Image.fromarray(np.ascontiguousarray(array)).save(path, compress_level=compress_level)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> HxWx3 uint8."""
    if x.dim() == 4:
        x = x[0]
    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


def training_images(root: Path | None = None) -> list[Path]:
    """The training split: BSDS500 train+test and the Wikipedia photos. Never Kodak."""
    root = default_data_root() if root is None else Path(root)
    files = []
    for sub in ("bsds500/train", "bsds500/test", "wikipedia-photos"):
        files += list_images(root / sub)
    assert not any("kodak" in str(p).lower() for p in files)
    return files


def validation_images(root: Path | None = None) -> list[Path]:
    root = default_data_root() if root is None else Path(root)
    return list_images(root / "bsds500/val")


def builtin_images() -> list[tuple[str, np.ndarray]]:
    """Sample photos that ship with scikit-image (offline), as (name, HxWx3 uint8)."""
    import skimage.data as data

    names = ["astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field",
             "immunohistochemistry", "retina"]
    out = []
    for name in names:
        try:
            img = getattr(data, name)()
        except Exception:  # a sample missing from this scikit-image version is simply skipped
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        out.append((name, np.ascontiguousarray(img[..., :3]).astype(np.uint8)))
    return out
