"""The colour side channel: a picture's chroma (and, if asked, luma) as coarse block means, sent
beside its tokens.

The tokenizer's 10-bit code per 16x16 patch carries little colour (docs/models.md, "Colour
drift"), so the encoder may also send the original's chroma (BT.601 Cb and Cr, linear in RGB) as
means over B x B-pixel blocks, quantised with step q, and with `luma` its Y too (which also
corrects, at block scale, the regions of lost tokens). The receiver swaps the decoded picture's
own block means for the sent ones, spread bilinearly, so detail inside a block stays the decoder's.

Coding: each block is predicted from its neighbours by LOCO-I's median edge detector (left, above
and above-left; the first row from the left, the first column from above, the first block from
mid-grey), and the residuals of Cb, Cr (then Y) are ANS coded (constriction), each plane under a
quantised Laplace distribution whose scale the encoder picks for this picture and writes in the
section, so no prior ships. Section layout (docs/bitstream.md):

    offset size field
    0      1    bit 7: luma sent; bits 4-6: log2 of the block side B (4..7, 16..128 pixels);
                bits 0-3: step q (1..15)
    1      2    payload length n in bytes (uint16, little-endian)
    3      p    Laplace scale of each plane's residuals (Cb, Cr, then Y), in quarters (1..255)
    3+p    n    payload: the residuals, 32-bit little-endian words
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import constriction
import numpy as np
from PIL import Image

# BT.601 full-range RGB -> Y, Cb, Cr (the offsets of 128 cancel in every difference here)
TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
FROM_YCC = np.linalg.inv(TO_YCC)
BLOCKS = (16, 32, 64, 128)
MAX_STEP = 15
_SECTION = struct.Struct("<BH")  # then one scale byte per plane
_RESIDUAL_LIMIT = 256  # |Cb|, |Cr|, |Y - 128| <= 128 on the 0-255 scale: a residual of step >= 1 fits
_LUMA_FLAG = 0x80


class ColourError(ValueError):
    """A colour section or setting that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class ColourPlane:
    """Quantised Cb, Cr (and Y - 128) block means of one picture: what is sent is `step` times
    these."""

    block: int
    step: int
    cb: np.ndarray  # (ceil(H/B), ceil(W/B)) int
    cr: np.ndarray
    luma: np.ndarray | None = None

    def __post_init__(self):
        check_settings(self.block, self.step)
        if self.cb.shape != self.cr.shape or self.cb.ndim != 2 or (
                self.luma is not None and self.luma.shape != self.cb.shape):
            raise ColourError(f"Cb {self.cb.shape}, Cr {self.cr.shape} (and Y) must be equal 2-D grids")

    @property
    def planes(self) -> list[tuple[int, np.ndarray]]:
        """(YCbCr channel, its values), in coding order."""
        return [(1, self.cb), (2, self.cr)] + ([(0, self.luma)] if self.luma is not None else [])

    def __eq__(self, other) -> bool:
        return (isinstance(other, ColourPlane) and (self.block, self.step) == (other.block, other.step)
                and len(self.planes) == len(other.planes)
                and all(np.array_equal(a, b) for (_, a), (_, b) in zip(self.planes, other.planes)))

    def describe(self) -> dict:
        return {"chroma_block": self.block, "chroma_step": self.step, "chroma_luma": self.luma is not None,
                "chroma_blocks": f"{self.cb.shape[0]}x{self.cb.shape[1]}"}


def check_settings(block: int, step: int) -> None:
    if block not in BLOCKS:
        raise ColourError(f"chroma block {block}: expected one of {', '.join(map(str, BLOCKS))} pixels")
    if not 1 <= step <= MAX_STEP:
        raise ColourError(f"chroma step {step}: expected 1..{MAX_STEP}")


def blocks_for(image_size: tuple[int, int], block: int) -> tuple[int, int]:
    h, w = image_size
    return (-(-h // block), -(-w // block))


def block_means(plane: np.ndarray, block: int) -> np.ndarray:
    """(H, W) -> (ceil(H/B), ceil(W/B)) means (PIL's box filter; edge blocks are stretched to fit)."""
    bh, bw = blocks_for(plane.shape, block)
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((bw, bh), Image.BOX),
                      dtype=np.float64)


def spread(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Block means -> a full-size plane, bilinearly between block centres."""
    return np.asarray(Image.fromarray(small.astype(np.float32), mode="F").resize((shape[1], shape[0]),
                                                                                 Image.BILINEAR), dtype=np.float64)


def measure(rgb: np.ndarray, block: int = 64, step: int = 2, luma: bool = False) -> ColourPlane:
    """The colour side channel of an HxWx3 uint8 picture."""
    check_settings(block, step)
    ycc = rgb.astype(np.float64) @ TO_YCC.T - [128, 0, 0]
    y, cb, cr = (np.round(block_means(ycc[..., c], block) / step).astype(np.int64) for c in (0, 1, 2))
    return ColourPlane(block, step, cb, cr, y if luma else None)


def apply(decoded: np.ndarray, plane: ColourPlane) -> np.ndarray:
    """The decoded picture with its Cb/Cr block means replaced by the sent ones."""
    if blocks_for(decoded.shape[:2], plane.block) != plane.cb.shape:
        raise ColourError(f"chroma blocks {plane.cb.shape} do not fit a {decoded.shape[1]}x"
                          f"{decoded.shape[0]} picture at {plane.block} pixels")
    ycc = decoded.astype(np.float64) @ TO_YCC.T - [128, 0, 0]
    for c, sent in plane.planes:
        own = ycc[..., c]
        ycc[..., c] = own + spread(sent * plane.step - block_means(own, plane.block), own.shape)
    return np.clip(np.round((ycc + [128, 0, 0]) @ FROM_YCC.T), 0, 255).astype(np.uint8)


def _median_edge(left, above, above_left):
    """LOCO-I's predictor: the smaller of left and above under an edge above-left of both, the
    larger over one, else the plane through the three."""
    low, high = np.minimum(left, above), np.maximum(left, above)
    return np.where(above_left >= high, low, np.where(above_left <= low, high, left + above - above_left))


def _residuals(q: np.ndarray) -> np.ndarray:
    """Raster-order residuals of the median-edge prediction (first row from the left, first column
    from above, the first value from 0)."""
    pred = np.zeros_like(q)
    pred[0, 1:] = q[0, :-1]
    pred[1:, 0] = q[:-1, 0]
    pred[1:, 1:] = _median_edge(q[1:, :-1], q[:-1, 1:], q[:-1, :-1])
    return (q - pred).ravel()


def _undo_residuals(r: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    r = r.reshape(shape).tolist()
    q = [[0] * w for _ in range(h)]
    for i in range(h):
        for j in range(w):
            if i == 0:
                pred = q[0][j - 1] if j else 0
            elif j == 0:
                pred = q[i - 1][0]
            else:  # _median_edge on scalars
                left, above, above_left = q[i][j - 1], q[i - 1][j], q[i - 1][j - 1]
                low, high = min(left, above), max(left, above)
                pred = low if above_left >= high else high if above_left <= low else left + above - above_left
            q[i][j] = pred + r[i][j]
    return np.array(q, dtype=np.int64)


def _model(scale_code: int):
    return constriction.stream.model.QuantizedLaplace(-_RESIDUAL_LIMIT, _RESIDUAL_LIMIT, 0.0, scale_code / 4)


def to_bytes(plane: ColourPlane) -> bytes:
    residuals = [_residuals(values).astype(np.int32) for _, values in plane.planes]
    if max(np.abs(r).max(initial=0) for r in residuals) > _RESIDUAL_LIMIT:
        raise ColourError("colour values out of range (more than 128 away from mid-grey)")
    # each plane's maximum-likelihood Laplace scale: its mean absolute residual
    scales = [int(np.clip(np.round(4 * np.abs(r).mean()), 1, 255)) for r in residuals]
    coder = constriction.stream.stack.AnsCoder()
    for r, scale in reversed(list(zip(residuals, scales))):  # a stack: the first plane decodes first
        coder.encode_reverse(r, _model(scale))
    payload = coder.get_compressed().astype("<u4").tobytes()
    if len(payload) > 0xFFFF:
        raise ColourError(f"colour section of {len(payload)} bytes exceeds its 65535-byte limit: use larger blocks")
    first = (plane.block.bit_length() - 1) << 4 | plane.step | (_LUMA_FLAG if plane.luma is not None else 0)
    return _SECTION.pack(first, len(payload)) + bytes(scales) + payload


def _header_bytes(first: int) -> int:
    return _SECTION.size + (3 if first & _LUMA_FLAG else 2)


def section_length(data: bytes, offset: int = 0) -> int:
    """Bytes of the colour section that starts at `offset` of `data` and must end within it."""
    if len(data) - offset < _SECTION.size:
        raise ColourError("truncated colour section")
    first, n = _SECTION.unpack_from(data, offset)
    length = _header_bytes(first) + n
    if offset + length > len(data):
        raise ColourError(f"colour section of {length} bytes runs past the end of its container")
    return length


def from_bytes(data: bytes, image_size: tuple[int, int]) -> ColourPlane:
    """The ColourPlane of a picture of `image_size` (H, W) from its colour section (exactly)."""
    if len(data) < _SECTION.size:
        raise ColourError("truncated colour section")
    first, n = _SECTION.unpack_from(data)
    block, step, luma = 1 << ((first >> 4) & 7), first & 15, bool(first & _LUMA_FLAG)
    check_settings(block, step)
    head = _header_bytes(first)
    if len(data) != head + n or n % 4:
        raise ColourError(f"colour section of {len(data)} bytes, its header says {head + n} "
                          f"(whole 32-bit words)")
    scales = list(data[_SECTION.size: head])
    if 0 in scales:
        raise ColourError("colour section: zero Laplace scale")
    shape = blocks_for(image_size, block)
    words = np.frombuffer(data[head:], dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        residuals = [np.asarray(coder.decode(_model(scale), shape[0] * shape[1]), dtype=np.int64)
                     for scale in scales]
    except Exception as e:  # constriction raises plain errors on exhausted or invalid data
        raise ColourError(f"colour section does not decode ({e})") from None
    if not coder.is_empty():
        raise ColourError("colour section: unused data after its values")
    values = [_undo_residuals(r, shape) for r in residuals]
    return ColourPlane(block, step, values[0], values[1], values[2] if luma else None)

