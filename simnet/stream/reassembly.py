"""Reassembly of a VQ stream's token packets at the receiver: packets of any number of frames, in
any order, with duplicates and corrupted ones, back into each frame's grid, the mask of the
positions still missing, its coarse layer's cells and its colour side channel."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codec import colour as colour_section
from codec.bitstream import grid_shape_for
from codec.colour import ColourPlane
from codec.entropy import EntropyError, decode_symbols
from codec.packets import Packet, PacketError, interleave_order, parse_packet
from codec.temporal import decode_update
from codec.tokens import LossyTokenGrid, TokenGrid


@dataclass
class FrameAssembly:
    level: int
    image_size: tuple[int, int]
    interleave: str
    seed: int
    count: int
    reference: int | None = None  # a P-frame's: the frame it updates
    # packet index -> (first position in the interleaved order, decoded symbols, a P-frame's
    # skip flags: its symbols are the new indices at the flagged positions, 0 elsewhere)
    received: dict[int, tuple[int, np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    chroma: ColourPlane | None = None  # the colour side channel, from the first copy that arrived


@dataclass
class DepacketizerStats:
    accepted: int = 0
    corrupt: int = 0
    duplicate: int = 0
    inconsistent: int = 0


class Depacketizer:
    """Collects packets of any number of frames, in any order, with duplicates and corrupted
    ones, and gives each frame back as a grid plus a mask of the positions still missing (and,
    where the stream sends a coarse layer, the cells that arrived of it)."""

    def __init__(self, prior):
        """`prior(K)` returns level K's Prior (ImageCodec.prior)."""
        self.prior = prior
        # (stream, frame, coarse layer) -> what arrived of it
        self.frames: dict[tuple[int, int, bool], FrameAssembly] = {}
        self.stats = DepacketizerStats()

    def add(self, data: bytes) -> str:
        """Returns "ok", "corrupt", "duplicate" or "inconsistent"; never raises for bad data."""
        try:
            packet = parse_packet(data)
        except PacketError:
            self.stats.corrupt += 1
            return "corrupt"
        return self.add_packet(packet)

    def add_packet(self, packet: Packet) -> str:
        """`add` for a packet already parsed (a receiver that looked at its header first)."""
        try:
            flags = None
            if packet.update:
                flags, new = decode_update(packet.payload, packet.tokens, packet.change, self.prior(packet.level))
                symbols = np.zeros(packet.tokens, dtype=np.int64)
                symbols[flags] = new
            else:
                symbols = decode_symbols(packet.payload, packet.tokens, self.prior(packet.level))
            chroma = colour_section.from_bytes(packet.colour, packet.image_size) if packet.colour else None
        except (EntropyError, KeyError, ValueError):  # ColourError is a ValueError
            self.stats.corrupt += 1
            return "corrupt"
        key = (packet.stream, packet.frame, packet.coarse)
        frame = self.frames.get(key)
        if frame is None:
            frame = self.frames[key] = FrameAssembly(packet.level, packet.image_size,
                                                     packet.interleave, packet.seed, packet.count, packet.reference)
        elif (frame.level, frame.image_size, frame.interleave, frame.seed, frame.count, frame.reference) != (
                packet.level, packet.image_size, packet.interleave, packet.seed, packet.count, packet.reference):
            self.stats.inconsistent += 1
            return "inconsistent"
        if packet.index in frame.received:
            self.stats.duplicate += 1
            return "duplicate"
        frame.received[packet.index] = (packet.start, symbols, flags)
        if frame.chroma is None:
            frame.chroma = chroma
        self.stats.accepted += 1
        return "ok"

    def chroma(self, stream: int, frame: int) -> ColourPlane | None:
        """The frame's colour side channel, or None where it had none or every copy was lost."""
        assembly = self.frames.get((stream, frame, False))
        return assembly.chroma if assembly else None

    def assemble(self, stream: int, frame: int, expected: tuple[int, tuple[int, int]] | None = None
                 ) -> LossyTokenGrid:
        """The frame's grid and missing mask. `expected` = (level, (height, width)) lets a frame
        whose every packet was lost still come back (all missing)."""
        assembly = self.frames.get((stream, frame, False))
        if assembly is None:
            if expected is None:
                raise KeyError(f"no packet of stream {stream} frame {frame} arrived")
            level, size = expected
            shape = grid_shape_for(*size)
            return LossyTokenGrid(TokenGrid(np.zeros(shape, dtype=np.int64), level, size),
                                  np.ones(shape, dtype=bool))
        flat, missing, _ = _placed(assembly)
        return LossyTokenGrid(TokenGrid(flat, assembly.level, assembly.image_size), missing)

    def update(self, stream: int, frame: int) -> tuple[int, np.ndarray] | None:
        """A P-frame's (reference frame, changed mask: False where unchanged or lost), or None
        where the frame is intra or none of it arrived. Its grid (`assemble`) holds the new
        indices where changed."""
        assembly = self.frames.get((stream, frame, False))
        if assembly is None or assembly.reference is None:
            return None
        return assembly.reference, _placed(assembly)[2]

    def cells(self, stream: int, frame: int) -> tuple[int, np.ndarray] | None:
        """The frame's coarse layer as (its level, (h, w) cells, -1 where lost), or None where no
        packet of it arrived."""
        assembly = self.frames.get((stream, frame, True))
        if assembly is None:
            return None
        flat, missing, _ = _placed(assembly)
        return assembly.level, np.where(missing, -1, flat)

    def cells_at(self, stream: int, frame: int, level: int, shape: tuple[int, int]) -> np.ndarray:
        """The frame's coarse cells at `level` ((h, w), -1 where lost); all -1 where none of its
        layer at that level arrived (a layer of another level or grid shape is not this stream's)."""
        arrived = self.cells(stream, frame)
        if arrived is None or arrived[0] != level or arrived[1].shape != tuple(shape):
            return np.full(shape, -1, dtype=np.int64)
        return arrived[1]

    def forget(self, stream: int, frame: int) -> None:
        for coarse in (False, True):
            self.frames.pop((stream, frame, coarse), None)


def _placed(assembly: FrameAssembly) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The received symbols of a layer at their grid positions, the mask of those missing, and
    a P-frame's changed mask (all False for an intra frame)."""
    shape = grid_shape_for(*assembly.image_size)
    n = shape[0] * shape[1]
    order = interleave_order(n, assembly.interleave, assembly.seed)
    flat = np.zeros(n, dtype=np.int64)
    missing = np.ones(n, dtype=bool)
    changed = np.zeros(n, dtype=bool)
    for start, symbols, flags in assembly.received.values():
        positions = order[start: start + len(symbols)]
        flat[positions] = symbols
        missing[positions] = False
        if flags is not None:
            changed[positions] = flags
    return flat.reshape(shape), missing.reshape(shape), changed.reshape(shape)
