"""The .vqb file: one image's token grid, entropy coded. Layout documented in docs/bitstream.md.

    offset size field
    0      4    magic b"SNVQ"
    4      1    version (1; 2 with a colour section)
    5      1    log2 of the codebook level K
    6      2    image width  (uint16, little-endian)
    8      2    image height (uint16)
    10     4    model checksum: first 4 bytes of sha256 over the tokenizer and levels files
    14     c    version 2 only: the colour section (codec/colour.py), its length in its own header
    14+c   n    payload: the ANS-coded indices in raster order, 32-bit little-endian words
    14+c+n 4    CRC32 of every byte before it

The grid shape follows from the image size and the factor 16; the symbol count from the grid.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from . import colour
from .colour import ColourPlane, ColourError
from .entropy import EntropyError, Prior, decode_symbols, encode_symbols
from .tokens import TokenGrid

MAGIC = b"SNVQ"
VERSION = 1
VERSION_WITH_COLOUR = 2
FACTOR = 16
_HEADER = struct.Struct("<4sBBHH4s")
HEADER_BYTES = _HEADER.size
CRC_BYTES = 4
MAX_SIDE = 65535


class BitstreamError(ValueError):
    """A .vqb file that cannot be decoded; the message says what is wrong."""


@dataclass
class BitstreamHeader:
    version: int
    level: int
    width: int
    height: int
    model_checksum: bytes
    payload_bytes: int  # the tokens' ANS payload
    chroma: ColourPlane | None = None  # the colour side channel (version 2)
    colour_bytes: int = 0  # its section, header included

    @property
    def grid_shape(self) -> tuple[int, int]:
        return grid_shape_for(self.height, self.width)

    def describe(self) -> dict:
        h, w = self.grid_shape
        fields = {"format": "simnet VQ bitstream", "version": self.version, "codebook": self.level,
                  "width": self.width, "height": self.height, "grid": f"{h}x{w}", "tokens": h * w,
                  "model_checksum": self.model_checksum.hex(), "payload_bytes": self.payload_bytes}
        if self.chroma is not None:
            fields.update(self.chroma.describe(), colour_bytes=self.colour_bytes)
        fields["file_bytes"] = HEADER_BYTES + self.colour_bytes + self.payload_bytes + CRC_BYTES
        return fields


def grid_shape_for(height: int, width: int) -> tuple[int, int]:
    return (-(-height // FACTOR), -(-width // FACTOR))


def level_code(level: int) -> int:
    code = int(level).bit_length() - 1
    if level < 2 or 1 << code != level:
        raise ValueError(f"codebook level must be a power of two >= 2, got {level}")
    return code


def write_bitstream(grid: TokenGrid, prior: Prior, model_checksum: bytes,
                    chroma: ColourPlane | None = None) -> bytes:
    """Version 1 without `chroma`, version 2 with its colour section."""
    height, width = grid.image_size
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ValueError(f"image size {width}x{height} does not fit the bitstream (max {MAX_SIDE})")
    if grid.shape != grid_shape_for(height, width):
        raise ValueError(f"grid {grid.shape} does not match image size {width}x{height}")
    if prior.size != grid.level:
        raise ValueError(f"prior has {prior.size} codes, the grid's level is {grid.level}")
    section = b""
    if chroma is not None:
        if chroma.cb.shape != colour.blocks_for(grid.image_size, chroma.block):
            raise ValueError(f"chroma blocks {chroma.cb.shape} do not fit image size {width}x{height}")
        section = colour.to_bytes(chroma)
    version = VERSION if chroma is None else VERSION_WITH_COLOUR
    header = _HEADER.pack(MAGIC, version, level_code(grid.level), width, height, model_checksum[:4])
    body = header + section + encode_symbols(grid.indices.ravel(), prior)
    return body + struct.pack("<I", zlib.crc32(body))


def read_header(data: bytes) -> BitstreamHeader:
    if len(data) < HEADER_BYTES + CRC_BYTES:
        raise BitstreamError(f"truncated: {len(data)} bytes, a bitstream has at least "
                             f"{HEADER_BYTES + CRC_BYTES}")
    magic, version, code, width, height, checksum = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError(f"wrong magic {magic!r}: not a simnet .vqb file")
    if version not in (VERSION, VERSION_WITH_COLOUR):
        raise BitstreamError(f"unsupported bitstream version {version} (this simnet reads "
                             f"{VERSION} and {VERSION_WITH_COLOUR})")
    (crc,) = struct.unpack_from("<I", data, len(data) - CRC_BYTES)
    if zlib.crc32(data[: len(data) - CRC_BYTES]) != crc:
        raise BitstreamError("CRC mismatch: the file is corrupted or truncated")
    if not 1 <= code <= 16:
        raise BitstreamError(f"codebook level 2^{code} is out of range")
    if width == 0 or height == 0:
        raise BitstreamError(f"empty image size {width}x{height}")
    chroma, colour_bytes = None, 0
    if version == VERSION_WITH_COLOUR:
        try:
            colour_bytes = colour.section_length(data[: len(data) - CRC_BYTES], HEADER_BYTES)
            chroma = colour.from_bytes(data[HEADER_BYTES: HEADER_BYTES + colour_bytes], (height, width))
        except ColourError as e:
            raise BitstreamError(str(e)) from None
    return BitstreamHeader(version, 1 << code, width, height, checksum,
                           len(data) - HEADER_BYTES - colour_bytes - CRC_BYTES, chroma, colour_bytes)


def read_bitstream(data: bytes, prior) -> tuple[BitstreamHeader, TokenGrid]:
    """Parse and decode; `prior(K)` returns level K's Prior, or raises ValueError for a level it
    does not have."""
    header = read_header(data)
    try:
        level_prior = prior(header.level)
    except ValueError as e:
        raise BitstreamError(str(e)) from None
    h, w = header.grid_shape
    payload = data[HEADER_BYTES + header.colour_bytes: len(data) - CRC_BYTES]
    try:
        symbols = decode_symbols(payload, h * w, level_prior)
    except EntropyError as e:
        raise BitstreamError(str(e)) from None
    return header, TokenGrid(symbols.reshape(h, w), header.level, (header.height, header.width))
