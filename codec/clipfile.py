"""The .vqv file: a clip as its temporal token stream, each frame's packets as they go on the wire
(full, self-describing ones: codec/packets.py). Layout documented in docs/bitstream.md.

    offset size field
    0      4    magic b"SNVV"
    4      1    version (1)
    5      1    log2 of the codebook level K
    6      2    frame width (uint16, little-endian)
    8      2    frame height (uint16)
    10     4    frame rate in millihertz (uint32; 25 fps = 25000)
    14     4    model checksum: first 4 bytes of sha256 over the tokenizer and levels files
    18     4    frame count (uint32)
    22     4    CRC32 of the 22 bytes before it
    then, per frame: its packet count (uint16), then per packet its length (uint16) and its bytes
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .bitstream import level_code

MAGIC = b"SNVV"
VERSION = 1
_HEADER = struct.Struct("<4sBBHHI4sI")
HEADER_BYTES = _HEADER.size + 4


class ClipFileError(ValueError):
    """A .vqv file that cannot be read; the message says why."""


@dataclass(frozen=True)
class ClipHeader:
    level: int
    width: int
    height: int
    fps: float
    model_checksum: bytes
    frames: int


def write_clip(header: ClipHeader, frames: list[list[bytes]]) -> bytes:
    if len(frames) != header.frames:
        raise ValueError(f"{len(frames)} frames, the header says {header.frames}")
    head = _HEADER.pack(MAGIC, VERSION, level_code(header.level), header.width, header.height,
                        round(header.fps * 1000), header.model_checksum[:4], header.frames)
    out = [head, struct.pack("<I", zlib.crc32(head))]
    for packets in frames:
        if len(packets) > 0xFFFF:
            raise ValueError("more than 65535 packets in a frame")
        out.append(struct.pack("<H", len(packets)))
        for p in packets:
            if len(p) > 0xFFFF:
                raise ValueError("a packet over 65535 bytes")
            out.append(struct.pack("<H", len(p)) + p)
    return b"".join(out)


def read_clip_header(data: bytes) -> ClipHeader:
    if len(data) < HEADER_BYTES:
        raise ClipFileError(f"truncated: {len(data)} bytes, a .vqv header is {HEADER_BYTES}")
    magic, version, code, width, height, mhz, checksum, count = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ClipFileError(f"not a .vqv clip (magic {magic!r})")
    (crc,) = struct.unpack_from("<I", data, _HEADER.size)
    if zlib.crc32(data[:_HEADER.size]) != crc:
        raise ClipFileError("header CRC mismatch")
    if version != VERSION:
        raise ClipFileError(f"version {version} is not supported (this reader knows {VERSION})")
    if not 1 <= code <= 16 or width == 0 or height == 0 or mhz == 0:
        raise ClipFileError(f"bad header fields (level code {code}, {width}x{height}, {mhz} mHz)")
    return ClipHeader(1 << code, width, height, mhz / 1000, checksum, count)


def read_clip(data: bytes) -> tuple[ClipHeader, list[list[bytes]]]:
    """-> (header, each frame's packets); ClipFileError where the file is cut short or malformed
    (the packets themselves are checked by their own CRCs when they are parsed)."""
    header = read_clip_header(data)
    pos, frames = HEADER_BYTES, []
    for i in range(header.frames):
        if pos + 2 > len(data):
            raise ClipFileError(f"truncated in frame {i} of {header.frames}")
        (n,) = struct.unpack_from("<H", data, pos)
        pos += 2
        packets = []
        for _ in range(n):
            if pos + 2 > len(data):
                raise ClipFileError(f"truncated in frame {i} of {header.frames}")
            (size,) = struct.unpack_from("<H", data, pos)
            pos += 2
            if pos + size > len(data):
                raise ClipFileError(f"truncated in frame {i} of {header.frames}")
            packets.append(bytes(data[pos:pos + size]))
            pos += size
        frames.append(packets)
    if pos != len(data):
        raise ClipFileError(f"{len(data) - pos} bytes after the last frame")
    return header, frames
