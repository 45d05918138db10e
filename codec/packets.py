"""Packets: a token grid split into independently decodable pieces that fit an MTU.

Tokens are first put in an interleaved order (a seeded pseudo-random permutation of the grid
positions), so that a burst of lost packets becomes scattered lost tokens; each packet then
carries a contiguous run of that order, entropy coded on its own with the level's prior.
Wire format (little-endian; docs/bitstream.md):

    offset size field
    0      1    0xA1: packet format marker and version 1
    1      1    bits 0-4: log2 of the codebook level K; bit 5: interleave mode; bit 6: coarse
                layer; bit 7: colour
    2      2    stream id
    4      4    frame number
    8      2    packet index
    10     2    packet count
    12     4    interleave seed
    16     2    image width
    18     2    image height
    20     2    first position of this packet in the interleaved order
    22     2    number of tokens in this packet
    24     c    with the colour bit: the frame's colour section (codec/colour.py; self-delimiting)
    24+c   n    payload: ANS-coded indices, 32-bit words
    24+c+n 4    CRC32 of every byte before it

P-frame packets of a temporal stream (codec/temporal.py) carry marker 0xA2 and, after the 24
bytes above, the frame they update (4, in practice the previous one) and the probability of a
changed token (2, a 16-bit fraction); their payload codes, for each position of the run, a skip
flag and the new index of a changed one. Their "number of tokens" counts positions.

The compact form (RTP-like, for transports that number and check their packets themselves, as the
FEC shim of simnet.network.protection does): 4 bytes, the first position (2) and the number of
tokens (2; bit 15: colour, bit 14: coarse layer, bit 13: a P-frame update of the previous
frame, followed by its 2-byte change probability), then the colour section if any, then the
payload. What it leaves out is signalled once per stream (`Session`: stream id, level, image size,
interleave mode, seed, coarse level) or carried by the transport (frame, index, count).

The coarse layer (optional, `coarse_packets`): each token's cell at a coarser level of the same
codec (its code there; the levels nest), in packets of their own, coded under that level's prior
and interleaved with another seed (`coarse_seed`), so that a token whose packet was lost usually
still has its cell. It is protection: the receiver then chooses among the cell's few codes
instead of all of them (docs/models.md measures what it buys against FEC of the same bytes).

The colour side channel of a frame rides in `colour_copies` of its packets, spread over the
frame's packets so that one burst is less likely to take every copy; a frame all of whose copies
were lost decodes without it.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import colour as colour_section
from .bitstream import grid_shape_for, level_code
from .colour import ColourError
from .entropy import Prior, encode_symbols
from .temporal import encode_update, quantise_probability, update_bits
from .tokens import TokenGrid

MARKER = 0xA1
UPDATE_MARKER = 0xA2  # a P-frame's packet
_HEADER = struct.Struct("<BBHIHHIHHHH")
_UPDATE = struct.Struct("<IH")  # the frame it updates, the change probability
_COMPACT = struct.Struct("<HH")
_COMPACT_UPDATE = struct.Struct("<H")
COMPACT_OVERHEAD_BYTES = _COMPACT.size
UPDATE_BYTES = _UPDATE.size  # what a P-frame packet's header adds, full and compact
COMPACT_UPDATE_BYTES = _COMPACT_UPDATE.size
HEADER_BYTES = _HEADER.size
CRC_BYTES = 4
OVERHEAD_BYTES = HEADER_BYTES + CRC_BYTES
INTERLEAVE_MODES = {"none": 0, "random": 1}
_MODE_NAMES = {v: k for k, v in INTERLEAVE_MODES.items()}
_COARSE_FLAG = 0x40  # in the full header's flags byte
_COLOUR_FLAG = 0x80
_UPDATE_TOKENS_FLAG = 0x2000  # in the compact header's token count
_COARSE_TOKENS_FLAG = 0x4000
_COLOUR_TOKENS_FLAG = 0x8000
MAX_PACKET_TOKENS = _UPDATE_TOKENS_FLAG - 1
DEFAULT_MTU = 1200
# a streamed frame's largest side (a scenario's limit too): one forged packet naming a 65535-pixel
# frame would otherwise make a receiver build and shuffle a 16-million-position grid
MAX_FRAME_SIDE = 4096


class PacketError(ValueError):
    """A packet that cannot be used; the message says why."""


@lru_cache(maxsize=64)
def interleave_order(count: int, mode: str, seed: int) -> np.ndarray:
    """The transmission order of `count` raster positions. "random" is a Fisher-Yates shuffle
    driven by splitmix64 from `seed`, specified here so that any implementation can reproduce it."""
    if mode == "none":
        return np.arange(count)
    if mode != "random":
        raise ValueError(f"unknown interleave mode {mode!r} (expected one of {sorted(INTERLEAVE_MODES)})")
    mask = (1 << 64) - 1
    state = seed & mask
    order = list(range(count))
    for i in range(count - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        j = z % (i + 1)
        order[i], order[j] = order[j], order[i]
    out = np.array(order, dtype=np.int64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Packet:
    stream: int
    frame: int
    index: int
    count: int
    level: int
    interleave: str
    seed: int
    image_size: tuple[int, int]  # (height, width)
    start: int
    tokens: int
    payload: bytes
    colour: bytes = b""  # the frame's colour section, in the packets that carry a copy
    coarse: bool = False  # a packet of the coarse layer: its tokens are cells at `level`
    reference: int | None = None  # a P-frame's packet: the frame it updates; None: intra
    change: int = 0  # a P-frame's probability of a changed token (codec.temporal, 16-bit fraction)

    @property
    def update(self) -> bool:
        return self.reference is not None

    def to_bytes(self) -> bytes:
        flags = (level_code(self.level) | (INTERLEAVE_MODES[self.interleave] << 5)
                 | (_COARSE_FLAG if self.coarse else 0) | (_COLOUR_FLAG if self.colour else 0))
        height, width = self.image_size
        head = _HEADER.pack(UPDATE_MARKER if self.update else MARKER, flags, self.stream, self.frame, self.index,
                            self.count, self.seed, width, height, self.start, self.tokens)
        if self.update:
            head += _UPDATE.pack(self.reference, self.change)
        body = head + self.colour + self.payload
        return body + struct.pack("<I", zlib.crc32(body))

    @property
    def size(self) -> int:
        return OVERHEAD_BYTES + (_UPDATE.size if self.update else 0) + len(self.colour) + len(self.payload)

    def to_compact(self) -> bytes:
        """The compact form: position, token count, change probability (a P-frame's), colour,
        payload (the rest is in the `Session`)."""
        if self.update and self.reference != (self.frame - 1) % 2**32:
            raise ValueError("a compact P-frame packet updates the frame before it")
        flags = ((_COLOUR_TOKENS_FLAG if self.colour else 0) | (_COARSE_TOKENS_FLAG if self.coarse else 0)
                 | (_UPDATE_TOKENS_FLAG if self.update else 0))
        head = _COMPACT.pack(self.start, self.tokens | flags)
        if self.update:
            head += _COMPACT_UPDATE.pack(self.change)
        return head + self.colour + self.payload


@dataclass(frozen=True)
class Session:
    """A stream's constants, signalled once so compact packets can leave them out; frame f's
    interleave seed is (seed + f) mod 2^32, as the simulator's packetizer draws it, and its coarse
    layer's is `coarse_seed` of that."""
    stream: int
    level: int
    image_size: tuple[int, int]  # (height, width)
    interleave: str
    seed: int
    coarse: int = 0  # the coarse layer's level; 0: the stream has none

    def frame_seed(self, frame: int) -> int:
        return (self.seed + frame) % 2**32


def coarse_max_tokens(max_tokens: int | None) -> int | None:
    """Cells per coarse packet for token packets of at most `max_tokens`: twice as many (a cell
    takes half a token's bits or less), so the layer costs fewer headers; None: the MTU decides."""
    return min(2 * max_tokens, MAX_PACKET_TOKENS) if max_tokens else None


def coarse_seed(seed: int) -> int:
    """The coarse layer's interleave seed, from its frame's: another permutation, so that the
    tokens of one lost packet have their cells spread over every coarse packet."""
    return (seed + 0x9E3779B9) % 2**32


def parse_compact(data: bytes, session: Session, frame: int, index: int, count: int) -> Packet:
    """A compact packet, with what the transport says (frame, index, count) -> Packet, or PacketError."""
    if len(data) < COMPACT_OVERHEAD_BYTES:
        raise PacketError(f"truncated compact packet: {len(data)} bytes")
    start, tokens = _COMPACT.unpack_from(data)
    has_colour, coarse = bool(tokens & _COLOUR_TOKENS_FLAG), bool(tokens & _COARSE_TOKENS_FLAG)
    update = bool(tokens & _UPDATE_TOKENS_FLAG)
    tokens &= MAX_PACKET_TOKENS
    begin, change = COMPACT_OVERHEAD_BYTES, 0
    if update:
        if coarse:
            raise PacketError("a coarse-layer packet cannot be a P-frame update")
        if len(data) < begin + _COMPACT_UPDATE.size:
            raise PacketError(f"truncated compact P-frame packet: {len(data)} bytes")
        (change,) = _COMPACT_UPDATE.unpack_from(data, begin)
        begin += _COMPACT_UPDATE.size
        _check_change(change)
    gh, gw = grid_shape_for(*session.image_size)
    if start + tokens > gh * gw or index >= count:
        raise PacketError(f"tokens {start}..{start + tokens} or index {index}/{count} outside the frame")
    if coarse and not session.coarse:
        raise PacketError("a coarse-layer packet in a stream that sends no coarse layer")
    section, payload = _split_colour(bytes(data), begin, len(data), has_colour)
    seed = session.frame_seed(frame)
    return Packet(session.stream, frame, index, count, session.coarse if coarse else session.level,
                  session.interleave, coarse_seed(seed) if coarse else seed, session.image_size, start,
                  tokens, payload, section, coarse, (frame - 1) % 2**32 if update else None, change)


def _check_change(change: int) -> None:
    if not 1 <= change < 1 << 16:
        raise PacketError(f"P-frame change probability {change}/65536 outside (0, 1)")


def _split_colour(data: bytes, begin: int, end: int, has_colour: bool) -> tuple[bytes, bytes]:
    """(colour section, payload) of the bytes data[begin:end]."""
    section = b""
    if has_colour:
        try:
            length = colour_section.section_length(data[:end], begin)
        except ColourError as e:
            raise PacketError(str(e)) from None
        section = data[begin: begin + length]
    payload = data[begin + len(section): end]
    if len(payload) % 4:
        raise PacketError("payload is not a whole number of 32-bit words")
    return section, payload


def parse_packet(data: bytes) -> Packet:
    """bytes -> Packet, or PacketError. Checks length, CRC, marker and every field's range."""
    if len(data) < OVERHEAD_BYTES:
        raise PacketError(f"truncated packet: {len(data)} bytes, at least {OVERHEAD_BYTES} needed")
    (crc,) = struct.unpack_from("<I", data, len(data) - CRC_BYTES)
    if zlib.crc32(data[: len(data) - CRC_BYTES]) != crc:
        raise PacketError("packet CRC mismatch")
    (marker, flags, stream, frame, index, count, seed, width, height, start,
     tokens) = _HEADER.unpack_from(data)
    if marker not in (MARKER, UPDATE_MARKER):
        raise PacketError(f"not a simnet packet (marker 0x{marker:02x}, expected 0x{MARKER:02x} or "
                          f"0x{UPDATE_MARKER:02x})")
    begin, reference, change = HEADER_BYTES, None, 0
    if marker == UPDATE_MARKER:
        if len(data) < OVERHEAD_BYTES + _UPDATE.size:
            raise PacketError(f"truncated P-frame packet: {len(data)} bytes")
        reference, change = _UPDATE.unpack_from(data, begin)
        begin += _UPDATE.size
        _check_change(change)
        if flags & _COARSE_FLAG:
            raise PacketError("a coarse-layer packet cannot be a P-frame update")
    code, mode = flags & 0x1F, (flags >> 5) & 1
    if not 1 <= code <= 16:
        raise PacketError(f"bad packet flags 0x{flags:02x}")
    if count == 0 or index >= count:
        raise PacketError(f"packet index {index} out of range for count {count}")
    if width == 0 or height == 0:
        raise PacketError(f"empty image size {width}x{height}")
    if max(width, height) > MAX_FRAME_SIDE:
        raise PacketError(f"image size {width}x{height} exceeds the {MAX_FRAME_SIDE}-pixel side of streamed frames")
    gh, gw = grid_shape_for(height, width)
    if start + tokens > gh * gw:
        raise PacketError(f"tokens {start}..{start + tokens} exceed the {gh}x{gw} grid")
    section, payload = _split_colour(bytes(data), begin, len(data) - CRC_BYTES,
                                     bool(flags & _COLOUR_FLAG))
    return Packet(stream, frame, index, count, 1 << code, _MODE_NAMES[mode], seed,
                  (height, width), start, tokens, payload, section, bool(flags & _COARSE_FLAG),
                  reference, change)


def packetize(grid: TokenGrid, prior: Prior, *, stream: int = 0, frame: int = 0,
              mtu: int = DEFAULT_MTU, max_tokens: int | None = None, interleave: str = "random",
              seed: int = 0, overhead: int = OVERHEAD_BYTES, colour: bytes = b"",
              colour_copies: int = 1, coarse: bool = False) -> list[Packet]:
    """Split `grid` into the fewest equal-sized runs of the interleaved order whose packets
    (`overhead` bytes of headers, and the payload) each fit in `mtu` bytes, and at most
    `max_tokens` tokens each. `overhead`: the full header and CRC, or a compact header and the
    transport's shim. `colour` (a colour section) rides in `colour_copies` packets spread over
    the frame (every packet leaves room for it, so the runs stay equal). `coarse`: the packets
    are the frame's coarse layer (`grid` holds its cells)."""
    if coarse and colour:
        raise ValueError("the colour section rides in the frame's token packets, not its coarse layer")
    if prior.size != grid.level:
        raise ValueError(f"prior has {prior.size} codes, the grid's level is {grid.level}")
    if not 0 <= stream < 1 << 16 or not 0 <= frame < 1 << 32 or not 0 <= seed < 1 << 32:
        raise ValueError("stream, frame or seed out of range (16, 32, 32 bits)")
    if max(grid.image_size) > MAX_FRAME_SIDE:
        raise ValueError(f"image size {grid.image_size[1]}x{grid.image_size[0]}: streamed frames have sides of at "
                         f"most {MAX_FRAME_SIDE} pixels")
    if colour_copies < 1:
        raise ValueError(f"colour copies must be at least 1, got {colour_copies}")
    capacity = mtu - overhead - len(colour)
    if colour and capacity < 8:
        raise PacketError(f"the colour section ({len(colour)} B) leaves no room for tokens in a {mtu}-B packet "
                          f"({overhead} B of header): use larger chroma blocks, no luma, or a larger MTU")
    if capacity < 8:
        raise ValueError(f"MTU {mtu} B leaves no room for a payload after {overhead} B of header")
    n = grid.indices.size
    order = interleave_order(n, interleave, seed)
    symbols = grid.indices.ravel()[order]
    bits = -np.log2(prior.probabilities[symbols])
    bounds, payloads = _runs(bits, capacity, max_tokens, min(n, colour_copies) if colour else 1, mtu,
                             lambda a, b: encode_symbols(symbols[a:b], prior))
    count = len(payloads)
    carriers = {c * count // colour_copies for c in range(colour_copies)} if colour else set()
    return [Packet(stream, frame, i, count, grid.level, interleave, seed, grid.image_size,
                   int(a), int(b - a), p, colour if i in carriers else b"", coarse)
            for i, (a, b, p) in enumerate(zip(bounds[:-1], bounds[1:], payloads))]


def _runs(bits: np.ndarray, capacity: int, max_tokens: int | None, min_count: int, mtu: int, encode,
          carried: np.ndarray | None = None) -> tuple[np.ndarray, list[bytes]]:
    """The fewest equal runs of the n positions (at least `min_count`, at most MAX_PACKET_TOKENS
    positions each) that carry at most `max_tokens` tokens each (`carried`: which positions carry
    one; None: all) and whose payloads `encode(a, b)` fit `capacity` bytes -> (bounds, payloads)."""
    n = bits.size
    # The ANS coder adds at most one 32-bit word beyond the information content.
    count = max(1, math.ceil((bits.sum() / 8 + 4) / capacity))
    max_tokens = min(max_tokens or MAX_PACKET_TOKENS, MAX_PACKET_TOKENS)
    tokens = np.cumsum(np.concatenate([[0], carried if carried is not None else np.ones(n, dtype=np.int64)]))
    count = max(count, math.ceil(tokens[-1] / max(1, max_tokens)), math.ceil(n / MAX_PACKET_TOKENS), min_count)
    while True:
        if count > min(n, 65535):
            raise ValueError(f"cannot fit the grid into at most {min(n, 65535)} packets of {mtu} B")
        bounds = np.linspace(0, n, count + 1).round().astype(int)
        if (tokens[bounds[1:]] - tokens[bounds[:-1]]).max() <= max_tokens:
            payloads = [encode(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
            if all(len(p) <= capacity for p in payloads):
                return bounds, payloads
        count += 1


def packetize_update(grid: TokenGrid, changed: np.ndarray, reference: int, prior: Prior, *, stream: int = 0,
                     frame: int = 0, mtu: int = DEFAULT_MTU, max_tokens: int | None = None,
                     interleave: str = "random", seed: int = 0, overhead: int = OVERHEAD_BYTES,
                     colour: bytes = b"", colour_copies: int = 1) -> list[Packet]:
    """A P-frame's packets: `grid` (the frame's tokens) updates frame `reference` where `changed`;
    each packet carries a run of the interleaved order's positions, their skip flags and the new
    indices of the changed ones (codec/temporal.py), split as `packetize` splits a grid, with
    `max_tokens` counting the new indices a packet carries.
    `overhead` includes the P-frame fields (UPDATE_BYTES or COMPACT_UPDATE_BYTES)."""
    if prior.size != grid.level:
        raise ValueError(f"prior has {prior.size} codes, the grid's level is {grid.level}")
    if not 0 <= stream < 1 << 16 or not 0 <= frame < 1 << 32 or not 0 <= seed < 1 << 32 or not 0 <= reference < 1 << 32:
        raise ValueError("stream, frame, reference or seed out of range (16, 32, 32, 32 bits)")
    changed = np.asarray(changed, dtype=bool)
    if changed.shape != grid.shape:
        raise ValueError(f"changed mask {changed.shape} is not the grid's {grid.shape}")
    capacity = mtu - overhead - len(colour)
    if capacity < 8:
        raise ValueError(f"MTU {mtu} B leaves no room for a payload after {overhead} B of header")
    n = grid.indices.size
    order = interleave_order(n, interleave, seed)
    flags = changed.ravel()[order]
    symbols = grid.indices.ravel()[order]
    q = quantise_probability(float(flags.mean()))
    bits = update_bits(flags, symbols[flags], q, prior)
    bounds, payloads = _runs(bits, capacity, max_tokens, min(n, colour_copies) if colour else 1, mtu,
                             lambda a, b: encode_update(flags[a:b], symbols[a:b][flags[a:b]], q, prior),
                             carried=flags.astype(np.int64))
    count = len(payloads)
    carriers = {c * count // colour_copies for c in range(colour_copies)} if colour else set()
    return [Packet(stream, frame, i, count, grid.level, interleave, seed, grid.image_size, int(a), int(b - a), p,
                   colour if i in carriers else b"", False, reference, q)
            for i, (a, b, p) in enumerate(zip(bounds[:-1], bounds[1:], payloads))]
