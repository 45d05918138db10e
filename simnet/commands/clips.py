"""What `simnet encode`, `decode` and `info` do with a clip: a video as its temporal token stream
in a .vqv file (codec/clipfile.py), and back to frames through the stream's own receiver."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .common import out_console

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".y4m", ".ivf", ".264", ".h264"}


def is_clip(path: Path) -> bool:
    """A video file, a folder of frames, or a builtin clip's name."""
    from codec.video import BUILTIN_CLIPS

    return path.suffix.lower() in VIDEO_SUFFIXES or path.is_dir() or str(path) in BUILTIN_CLIPS


def encode_clip(source: Path, out: Path, codec, level: int, chroma: int, chroma_step: int, luma: bool,
                frames: int | None, refresh: str, period: int, threshold: float) -> None:
    from codec.clipfile import ClipHeader, write_clip
    from codec.temporal import Refresh
    from codec.video import BUILTIN_CLIPS, VideoError, builtin_clip, clip_info, read_frames

    from ..stream import StreamSender, make_codec

    path = builtin_clip(str(source)) if str(source) in BUILTIN_CLIPS else source
    try:
        fps = clip_info(path)["fps"] or 25.0
        stream = make_codec("vq", image_codec=codec, level=level, chroma=chroma, chroma_step=chroma_step, luma=luma,
                            refresh=Refresh(refresh, period), threshold=threshold)
        sender = StreamSender(stream)
        coded, kinds, size = [], [], None
        for i, rgb in enumerate(read_frames(path, frames)):
            size = size or rgb.shape[:2]
            if rgb.shape[:2] != size:
                raise UserError(f"{source}: frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, the clip's first "
                                f"{size[1]}x{size[0]}")
            frame, wire = sender.send(i, rgb)
            coded.append(wire.packets)
            kinds.append(frame.frame_type)
    except VideoError as e:
        raise UserError(str(e)) from None
    header = ClipHeader(level, size[1], size[0], fps, bytes.fromhex(codec.checksum)[:4], len(coded))
    data = write_clip(header, coded)
    out.write_bytes(data)
    seconds = len(coded) / fps
    out_console.print(f"{source} -> {out}: {len(coded)} frames {size[1]}x{size[0]} at {fps:g} fps, K={level}, "
                      f"{kinds.count('I')} I / {kinds.count('P')} P, {len(data)} bytes, "
                      f"{len(data) * 8 / seconds / 1000:.1f} kbit/s ({codec.device}, {codec.precision})")


def decode_clip(data: bytes, source: Path, out: Path, codec) -> None:
    from codec.clipfile import ClipFileError, read_clip

    from ..stream import StreamReceiver, make_codec

    try:
        header, frames = read_clip(data)
    except ClipFileError as e:
        raise UserError(f"{source}: {e}") from None
    if header.model_checksum != bytes.fromhex(codec.checksum)[:4]:
        raise UserError(f"{source}: made by other weights (model checksum {header.model_checksum.hex()}, "
                        f"these are {codec.checksum[:8]})")
    if header.level not in codec.level_sizes:
        raise UserError(f"{source}: level {header.level} is not one of this codec's {codec.level_sizes}")
    from recovery import get_method

    stream = make_codec("vq", image_codec=codec, level=header.level)
    receiver = StreamReceiver(stream)
    previous = get_method("previous")  # only a damaged file loses packets: their tokens repeat the last frame's
    damaged = 0

    def pictures():
        nonlocal damaged
        for i, packets in enumerate(frames):
            for p in packets:
                if receiver.put_wire(p) != "ok":
                    damaged += 1
            shown = receiver.decode(receiver.take(i), previous)
            yield shown.rgb

    write_frames(pictures(), out, header.fps)
    note = f", {damaged} damaged packets" if damaged else ""
    out_console.print(f"{source} -> {out}: {header.frames} frames {header.width}x{header.height}, K={header.level}"
                      f"{note} ({codec.device}, {codec.precision})")


def write_frames(pictures, out: Path, fps: float) -> None:
    """Frames to a folder of PNGs (OUT without a suffix, or an existing folder), a .y4m file
    (raw, lossless in 4:2:0) or an .mp4/.mkv (x264 at CRF 0)."""
    import av
    from fractions import Fraction

    from codec.images import save_rgb

    suffix = out.suffix.lower()
    if not suffix or out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        for i, rgb in enumerate(pictures):
            save_rgb(rgb, out / f"{i:05d}.png")
        return
    if suffix not in (".y4m", ".mp4", ".mkv"):
        raise UserError(f"{out}: write frames to a folder, a .y4m, .mp4 or .mkv file")
    rate = Fraction(round(fps * 1000), 1000)
    try:
        with av.open(str(out), "w", format="yuv4mpegpipe" if suffix == ".y4m" else None) as container:
            stream = container.add_stream("rawvideo" if suffix == ".y4m" else "libx264", rate=rate)
            stream.pix_fmt = "yuv420p"
            if suffix != ".y4m":
                stream.options = {"crf": "0", "preset": "veryfast"}
            for i, rgb in enumerate(pictures):
                if i == 0:
                    stream.height, stream.width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:stream.height, :stream.width]),
                                                   format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except (OSError, av.FFmpegError) as e:
        raise UserError(f"{out}: cannot write video ({e})") from None


def clip_info_lines(data: bytes, source: Path) -> dict:
    """The .vqv file's header and, per frame, its type, packets and bytes (no weights needed)."""
    from codec.clipfile import ClipFileError, read_clip
    from codec.packets import UPDATE_MARKER

    try:
        header, frames = read_clip(data)
    except ClipFileError as e:
        raise UserError(f"{source}: {e}") from None
    kinds = ["P" if p and p[0][0] == UPDATE_MARKER else "I" for p in frames]
    sizes = [sum(len(x) for x in p) for p in frames]
    seconds = header.frames / header.fps
    return {"format": "vqv clip", "level": header.level, "width": header.width, "height": header.height,
            "fps": header.fps, "frames": header.frames, "model_checksum": header.model_checksum.hex(),
            "i_frames": kinds.count("I"), "p_frames": kinds.count("P"),
            "bytes": len(data), "kbit_per_s": round(len(data) * 8 / seconds / 1000, 2) if seconds else None,
            "mean_i_frame_bytes": round(float(np.mean([s for s, k in zip(sizes, kinds) if k == "I"])), 1)
            if "I" in kinds else None,
            "mean_p_frame_bytes": round(float(np.mean([s for s, k in zip(sizes, kinds) if k == "P"])), 1)
            if "P" in kinds else None}
