"""Classical codecs at extreme rates, for the baselines every comparison includes (pillow).

JPEG and WebP at their lowest quality settings; what a practical user does at extreme rates:
downscale by f (Lanczos), code with WebP or AVIF, upscale back (Lanczos); and AVIF at full size.
The quality is chosen per image so the file fits a byte budget (the VQ codec's file on the same
image): the highest quality that fits, or the lowest quality where none does (then the record's
rate shows it is over the budget).
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

DOWNSCALE_FACTORS = (2, 3, 4, 6)  # WebP
AVIF_FACTORS = (1, 2, 3)  # 1: full size
# pillow's encoder options: WebP's slowest, best method; AVIF at libavif's default speed
_OPTIONS = {"JPEG": {"subsampling": 2}, "WEBP": {"method": 6}, "AVIF": {"speed": 6}}


def encode(rgb: np.ndarray, fmt: str, quality: int) -> bytes:
    """`rgb` coded as `fmt` (JPEG, WEBP, AVIF) at `quality`: the file's bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, quality=quality, **_OPTIONS[fmt])
    return buf.getvalue()


def decode(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    """A file's bytes -> HxWx3 uint8, upscaled (Lanczos) to `size` (height, width) where it differs."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.LANCZOS)
    return np.asarray(img)


def shrink(rgb: np.ndarray, factor: int) -> np.ndarray:
    """`rgb` downscaled by `factor` (Lanczos; 1: as it is)."""
    if factor == 1:
        return rgb
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w / factor)), max(1, round(h / factor))),
                                                  Image.LANCZOS))


def code(rgb: np.ndarray, fmt: str, quality: int) -> tuple[np.ndarray, int]:
    """(decoded HxWx3 uint8, bytes) of `rgb` coded as `fmt` (JPEG, WEBP, AVIF) at `quality`."""
    data = encode(rgb, fmt, quality)
    return decode(data), len(data)


def jpeg(rgb: np.ndarray, quality: int = 1) -> tuple[np.ndarray, int]:
    """Baseline JPEG 4:2:0 (1 is pillow's lowest quality)."""
    return code(rgb, "JPEG", quality)


def webp(rgb: np.ndarray, quality: int = 0) -> tuple[np.ndarray, int]:
    return code(rgb, "WEBP", quality)


def downscaled(rgb: np.ndarray, fmt: str, factor: int, quality: int) -> tuple[np.ndarray, int]:
    """Downscale by `factor` (Lanczos; 1: not at all), code, decode, upscale back (Lanczos)."""
    data = encode(shrink(rgb, factor), fmt, quality)
    return decode(data, rgb.shape[:2]), len(data)


def at_rate(rgb: np.ndarray, fmt: str, factor: int, max_bytes: int) -> tuple[np.ndarray, int, int]:
    """The highest quality (0..100) whose file fits `max_bytes`, else quality 0.
    Returns (decoded, bytes, quality). Binary search: the file grows with the quality."""
    lo, hi, best = 0, 100, None
    while lo <= hi:
        q = (lo + hi) // 2
        decoded, nbytes = downscaled(rgb, fmt, factor, q)
        if nbytes <= max_bytes:
            best, lo = (decoded, nbytes, q), q + 1
        else:
            hi = q - 1
    if best is None:
        decoded, nbytes = downscaled(rgb, fmt, factor, 0)
        best = (decoded, nbytes, 0)
    return best


def split_avif(data: bytes) -> tuple[bytes, bytes]:
    """An AVIF file -> (its HEIF container: every box before the media data, and the media data
    box's header; the AV1 bitstream). A real-time sender sends only the bitstream (as RTP's AV1
    payload format does) and the receiver rebuilds the container it was told once (`join_avif`)."""
    at = 0
    while at + 8 <= len(data):
        (size,) = struct.unpack_from(">I", data, at)
        if data[at + 4:at + 8] == b"mdat" and size == len(data) - at:
            return data[:at + 8], data[at + 8:]
        if size < 8:
            break
        at += size
    raise ValueError("not an AVIF file with its media data last")


def join_avif(container: bytes, payload: bytes) -> bytes:
    """The file that `container` (a `split_avif` container of the same encoder settings and
    image size, the session's template) and `payload` make: the item's extent length in `iloc` and
    the media data box's size patched to the payload's."""
    old = struct.unpack_from(">I", container, len(container) - 8)[0] - 8
    at = container.find(b"iloc")
    hit = container.find(struct.pack(">I", old), at) if at >= 0 else -1
    if hit < 0:
        raise ValueError("no iloc extent length to patch in the AVIF container")
    out = bytearray(container)
    out[hit:hit + 4] = struct.pack(">I", len(payload))
    out[-8:-4] = struct.pack(">I", len(payload) + 8)
    return bytes(out) + payload
