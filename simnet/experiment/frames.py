"""The frames a scenario sends: images or video fitted to one size, and the picture of a frame's
lost tokens that the report and the live view show."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from codec.images import builtin_images, list_images, load_rgb
from codec.video import BUILTIN_CLIPS, VideoError, builtin_clip, clip_info, read_frames

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


def clip_path(scenario: Scenario) -> Path:
    """The scenario's clip: a file or folder relative to it, or a clip shipped in a dependency."""
    video = scenario.source.video
    if video in BUILTIN_CLIPS:
        return builtin_clip(video)
    return scenario.resolve(video)


def _video_frames(scenario: Scenario) -> Iterator[tuple[str, np.ndarray]]:
    """The clip's frames as they are decoded (PyAV), at most `count`, taken at the scenario's
    frame rate where it is below the clip's (every other frame of a 30 fps clip sent at 15)."""
    src = scenario.source
    # a clip keeps its own frame size unless the scenario names one
    size = src.size if "size" in src.model_fields_set else None
    try:
        path = clip_path(scenario)
        clip_fps = clip_info(path)["fps"]
        step = clip_fps / src.fps if clip_fps and src.fps < clip_fps else 1.0
        sent, due = 0, 0.0
        for i, rgb in enumerate(read_frames(path)):
            if sent >= src.count:
                return
            if i + 1e-9 < due:
                continue
            due += step
            yield f"frame{sent:05d}", fit_frame(rgb, size)
            sent += 1
    except VideoError as e:
        raise ScenarioError(f"{scenario.path}: source.video: {e}") from None


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
