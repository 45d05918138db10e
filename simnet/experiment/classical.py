"""Classical codecs at extreme rates, for the baselines every comparison includes (pillow).

JPEG and WebP at their lowest quality settings, and what a practical user does at extreme rates:
downscale by f (Lanczos), WebP, upscale back (Lanczos), with the WebP quality chosen so the rate
matches a target (the VQ codec's rate on the same image).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

DOWNSCALE_FACTORS = (2, 3, 4, 6)


def jpeg(rgb: np.ndarray, quality: int = 1) -> tuple[np.ndarray, int]:
    """(decoded HxWx3 uint8, bytes) with baseline JPEG 4:2:0 at `quality` (1 is pillow's lowest)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, subsampling=2)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), buf.tell()


def webp(rgb: np.ndarray, quality: int = 0) -> tuple[np.ndarray, int]:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="WEBP", quality=quality, method=6)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), buf.tell()


def downscaled_webp(rgb: np.ndarray, factor: int, quality: int) -> tuple[np.ndarray, int]:
    h, w = rgb.shape[:2]
    small = Image.fromarray(rgb).resize((max(1, round(w / factor)), max(1, round(h / factor))),
                                        Image.LANCZOS)
    decoded, nbytes = webp(np.asarray(small), quality)
    return np.asarray(Image.fromarray(decoded).resize((w, h), Image.LANCZOS)), nbytes


def downscaled_webp_at_rate(rgb: np.ndarray, factor: int, max_bytes: int) -> tuple[np.ndarray, int, int]:
    """The highest WebP quality (0..100) whose file fits `max_bytes`, else quality 0.
    Returns (decoded, bytes, quality). Binary search: WebP size grows with quality."""
    lo, hi, best = 0, 100, None
    while lo <= hi:
        q = (lo + hi) // 2
        decoded, nbytes = downscaled_webp(rgb, factor, q)
        if nbytes <= max_bytes:
            best, lo = (decoded, nbytes, q), q + 1
        else:
            hi = q - 1
    if best is None:
        decoded, nbytes = downscaled_webp(rgb, factor, 0)
        best = (decoded, nbytes, 0)
    return best
