"""The frames a scenario sends: images or video fitted to one size, and the picture of a frame's
lost tokens that the report and the live view show."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from codec.images import builtin_images, list_images, load_rgb

from .scenario import Scenario, ScenarioError


def fit_frame(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize to cover (height, width), then centre-crop: every frame gets the same size."""
    if size is None:
        return rgb
    th, tw = size
    h, w = rgb.shape[:2]
    scale = max(th / h, tw / w)
    if abs(scale - 1) > 1e-9:
        rgb = np.asarray(Image.fromarray(rgb).resize((max(tw, round(w * scale)), max(th, round(h * scale))),
                                                     Image.LANCZOS))
    h, w = rgb.shape[:2]
    y, x = (h - th) // 2, (w - tw) // 2
    return np.ascontiguousarray(rgb[y:y + th, x:x + tw])


def frames(scenario: Scenario) -> Iterator[tuple[str, np.ndarray]]:
    """The scenario's frames, one at a time: (name, HxWx3 uint8), `source.count` of them. A video
    is read as it is consumed; images are fitted once and cycled (repeated frames share one array,
    the runner relies on that), so memory is bounded by the source's images, not by the count."""
    src = scenario.source
    if src.video:
        return _video_frames(scenario)
    folder = None if src.images == "builtin" else scenario.resolve(src.images)
    return image_frames(folder, src.size, src.count)


def _video_frames(scenario: Scenario) -> Iterator[tuple[str, np.ndarray]]:
    src = scenario.source
    try:
        import imageio.v3 as iio
    except ImportError:
        raise ScenarioError(f"{scenario.path}: source.video: reading video needs "
                            f"`pip install imageio[ffmpeg]`") from None
    i = -1
    for i, frame in enumerate(iio.imiter(scenario.resolve(src.video))):
        if i >= src.count:
            return
        yield f"frame{i:05d}", fit_frame(np.asarray(frame)[..., :3], src.size)
    if i < 0:
        raise ScenarioError(f"{scenario.path}: source.video: no frames")


def image_frames(folder: Path | None, size: tuple[int, int] | None, count: int) -> Iterator[tuple[str, np.ndarray]]:
    """`count` frames cycling through the images of `folder` (None: the builtin samples), each
    image fitted to `size` once; repeated frames share one array."""
    pool = builtin_images() if folder is None else [(p.name, load_rgb(p)) for p in list_images(folder)]
    fitted = [(name, fit_frame(rgb, size)) for name, rgb in pool[:count]]
    return (fitted[i % len(fitted)] for i in range(count))


def lost_token_overlay(rgb: np.ndarray, missing: np.ndarray, factor: int = 16) -> np.ndarray:
    """The frame with every lost token's `factor` x `factor` block tinted red."""
    h, w = rgb.shape[:2]
    up = np.kron(missing, np.ones((factor, factor), dtype=bool))[:h, :w]
    out = rgb.copy()
    out[up] = (out[up] * 0.4 + np.array([255, 0, 0]) * 0.6).astype(np.uint8)
    return out
