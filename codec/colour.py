"""The colour side channel: a picture's chroma (and, if asked, luma) as coarse block means, sent
beside its tokens.

The tokenizer's 10-bit code per 16x16 patch carries little colour (docs/models.md, "Colour
drift"), so the encoder may also send the original's chroma (BT.601 Cb and Cr, linear in RGB) as
means over B x B-pixel blocks, quantised with step q, and with `luma` its Y too (which also
corrects, at block scale, the regions of lost tokens). The receiver swaps the decoded picture's
own block means for the sent ones, spread bilinearly, so detail inside a block stays the decoder's.

Coding: each block is predicted from its left neighbour (the first column from the block above,
the first block from mid-grey), and the residuals of Cb, Cr (then Y) are ANS coded (constriction)
under a quantised Laplace distribution whose scale the encoder picks per picture and writes in the
section, so no prior ships. Section layout (docs/bitstream.md):

    offset size field
    0      1    bit 7: luma sent; bits 4-6: log2 of the block side B (4..7, 16..128 pixels);
                bits 0-3: step q (1..15)
    1      1    Laplace scale of the residuals, in quarters (1..255)
    2      2    payload length n in bytes (uint16, little-endian)
    4      n    payload: the residuals, 32-bit little-endian words
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
_SECTION = struct.Struct("<BBH")
SECTION_HEADER_BYTES = _SECTION.size
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


def _residuals(q: np.ndarray) -> np.ndarray:
    pred = np.zeros_like(q)
    pred[:, 1:] = q[:, :-1]
    pred[1:, 0] = q[:-1, 0]
    return (q - pred).ravel()


def _undo_residuals(r: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    q = r.reshape(shape).copy()
    q[:, 0] = np.cumsum(q[:, 0])
    return np.cumsum(q, axis=1)


def _model(scale_code: int):
    return constriction.stream.model.QuantizedLaplace(-_RESIDUAL_LIMIT, _RESIDUAL_LIMIT, 0.0, scale_code / 4)


def to_bytes(plane: ColourPlane) -> bytes:
    residuals = np.concatenate([_residuals(values) for _, values in plane.planes]).astype(np.int32)
    if np.abs(residuals).max(initial=0) > _RESIDUAL_LIMIT:
        raise ColourError("colour values out of range (more than 128 away from mid-grey)")
    # the maximum-likelihood Laplace scale is the mean absolute residual
    scale_code = int(np.clip(np.round(4 * np.abs(residuals).mean()), 1, 255))
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(residuals, _model(scale_code))
    payload = coder.get_compressed().astype("<u4").tobytes()
    first = (plane.block.bit_length() - 1) << 4 | plane.step | (_LUMA_FLAG if plane.luma is not None else 0)
    return _SECTION.pack(first, scale_code, len(payload)) + payload


def section_length(data: bytes, offset: int = 0) -> int:
    """Bytes of the colour section that starts at `offset` of `data`."""
    if len(data) - offset < SECTION_HEADER_BYTES:
        raise ColourError("truncated colour section")
    return SECTION_HEADER_BYTES + _SECTION.unpack_from(data, offset)[2]


def from_bytes(data: bytes, image_size: tuple[int, int]) -> ColourPlane:
    """The ColourPlane of a picture of `image_size` (H, W) from its colour section (exactly)."""
    if len(data) < SECTION_HEADER_BYTES:
        raise ColourError("truncated colour section")
    first, scale_code, n = _SECTION.unpack_from(data)
    block, step, luma = 1 << ((first >> 4) & 7), first & 15, bool(first & _LUMA_FLAG)
    check_settings(block, step)
    if scale_code == 0:
        raise ColourError("colour section: zero Laplace scale")
    if len(data) != SECTION_HEADER_BYTES + n or n % 4:
        raise ColourError(f"colour section of {len(data)} bytes, its header says {SECTION_HEADER_BYTES + n} "
                          f"(whole 32-bit words)")
    shape = blocks_for(image_size, block)
    planes = 3 if luma else 2
    count = planes * shape[0] * shape[1]
    words = np.frombuffer(data[SECTION_HEADER_BYTES:], dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        residuals = np.asarray(coder.decode(_model(scale_code), count), dtype=np.int64)
    except Exception as e:  # constriction raises plain errors on exhausted or invalid data
        raise ColourError(f"colour section does not decode ({e})") from None
    if not coder.is_empty():
        raise ColourError("colour section: unused data after its values")
    values = [_undo_residuals(part, shape) for part in np.split(residuals, planes)]
    return ColourPlane(block, step, values[0], values[1], values[2] if luma else None)

