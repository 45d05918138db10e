"""The VQ token codec as a stream codec: a frame becomes token packets at a level (with the colour
side channel riding in some of them), and what arrived of them becomes a picture again, the lost
tokens filled by a recovery method that may use the stream's history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from codec import colour
from codec.colour import ColourPlane
from codec.image_codec import ImageCodec
from codec.packets import (COMPACT_OVERHEAD_BYTES, COMPACT_UPDATE_BYTES, DEFAULT_MTU, OVERHEAD_BYTES, UPDATE_BYTES,
                           Packet, PacketError, Session, coarse_max_tokens, packetize_update, parse_compact)
from codec.temporal import DEFAULT_THRESHOLD, Refresh, TemporalCoder
from codec.tokens import CoarseCells, FrameHistory, LossyTokenGrid, TokenGrid

from .codec import DecodedFrame, EncodedFrame, FrameStatus, register_codec
from .reassembly import Depacketizer


@dataclass
class TokenArrival:
    """What a VQ receiver holds of one frame: the tokens that arrived (with the coarse layer's
    cells where the stream sends one) and its colour side channel, if a copy arrived. A P-frame's
    arrival also has `changed`: its grid holds new indices only there, the previous frame's
    tokens stand at the other positions that arrived."""
    index: int
    lossy: LossyTokenGrid
    chroma: ColourPlane | None
    changed: np.ndarray | None = None  # a P-frame's changed positions (False where lost)

    @property
    def lost(self) -> np.ndarray:
        return self.lossy.missing


@register_codec("vq")
class VQStreamCodec:
    """Frames as token packets of `image_codec` at `level`. `header` "full": self-describing
    packets; "compact": the stream's constants signalled once (`session`), the packets behind a
    transport that numbers them, whose `framing` bytes each packet also leaves room for."""

    def __init__(self, image_codec: ImageCodec, *, level: int, name: str = "vq", mtu: int = DEFAULT_MTU,
                 max_tokens: int | None = None, interleave: str = "random", seed: int = 1,
                 header: str = "full", framing: int = 0, chroma: int = 0, chroma_step: int = 2,
                 luma: bool = False, colour_copies: int = 2, stream: int = 0,
                 grids: dict[tuple[int, int], TokenGrid] | None = None,
                 refresh: Refresh | None = None, threshold: float = DEFAULT_THRESHOLD):
        """`refresh` (codec.temporal): a temporal stream, P-frames sending only the tokens that
        changed by more than `threshold` (the rate knob), refreshed as it says; None: every frame
        intra, as a stream of stills."""
        self.name, self.image_codec, self.level = name, image_codec, level
        self.mtu, self.max_tokens, self.interleave, self.seed = int(mtu), max_tokens, interleave, seed
        self.compact = header == "compact"
        self.unit_header = COMPACT_OVERHEAD_BYTES if self.compact else OVERHEAD_BYTES
        self.framing = framing
        self.chroma, self.chroma_step, self.luma, self.colour_copies = chroma, chroma_step, luma, colour_copies
        self.stream = stream
        # (frame, level) -> tokens: the frame being coded, or every frame where the caller shares
        # a cache between codecs (a comparison codes each frame at every level once)
        self._shared = grids is not None
        self._grids: dict[tuple[int, int], TokenGrid] = grids if grids is not None else {}
        self._planes: dict[int, ColourPlane] = {}
        self.temporal = TemporalCoder(image_codec, level, threshold, refresh) if refresh is not None else None

    # the sender's side

    def frame_seed(self, index: int) -> int:
        return (self.seed + index) % 2**32

    def tokens(self, index: int, rgb: np.ndarray, level: int) -> TokenGrid:
        """The frame's grid at `level` (kept while the frame is being coded: a rate search or a
        second method asks again)."""
        key = (index, level)
        if key not in self._grids:
            if not self._shared and self._grids and next(iter(self._grids))[0] != index:
                self._grids.clear()
            self._grids[key] = self.image_codec.encode(rgb, level)
        return self._grids[key]

    def colour_plane(self, index: int, rgb: np.ndarray | None) -> ColourPlane | None:
        """The frame's colour side channel, where the stream sends one."""
        if not self.chroma or rgb is None:
            return None
        if index not in self._planes:
            self._planes = {index: colour.measure(rgb, self.chroma, self.chroma_step, self.luma)}
        return self._planes[index]

    def packets(self, index: int, grid: TokenGrid, plane: ColourPlane | None) -> list[Packet]:
        """The frame's token packets: interleaved runs that fit the MTU, the colour section in
        `colour_copies` of them."""
        return self.image_codec.packetize(
            grid, stream=self.stream, frame=index % 2**32, mtu=self.mtu, max_tokens=self.max_tokens,
            interleave=self.interleave, seed=self.frame_seed(index), overhead=self.unit_header + self.framing,
            colour=colour.to_bytes(plane) if plane is not None else b"", colour_copies=self.colour_copies)

    def unit(self, packet: Packet) -> bytes:
        return packet.to_compact() if self.compact else packet.to_bytes()

    def encode(self, index: int, rgb: np.ndarray | None, choice: int | None = None,
               grid: TokenGrid | None = None, plane: ColourPlane | None = None) -> EncodedFrame:
        """The frame at level `choice` (None: the stream's level); `grid` and `plane`: its tokens
        and colour side channel, already coded; `rgb` None: no side channel (a budget's reference)."""
        if self.temporal is not None and grid is None:
            return self.encode_temporal(index, rgb, plane)
        level = choice or (grid.level if grid is not None else self.level)
        grid = grid if grid is not None else self.tokens(index, rgb, level)
        plane = plane if plane is not None else self.colour_plane(index, rgb)
        packets = self.packets(index, grid, plane)
        colour_bytes = sum(len(p.colour) for p in packets)
        return EncodedFrame(index, [self.unit(p) for p in packets], self.unit_header, f"K={level}", level=level,
                            payload_bytes=sum(len(p.payload) for p in packets) + colour_bytes,
                            extra={"grid": grid, "chroma": plane, "colour_bytes": colour_bytes, "coarse_bytes": 0})

    def encode_temporal(self, index: int, rgb: np.ndarray, plane: ColourPlane | None = None,
                        resend: np.ndarray | None = None) -> EncodedFrame:
        """Frame `index` of a temporal stream (frames in order): an I-frame where the refresh says
        so, else a P-frame of the tokens that changed, and of the `resend` positions (those the
        receiver reported lacking). Every frame carries its colour section."""
        indices, changed = self.temporal.code(index, rgb, resend)
        grid = TokenGrid(indices, self.level, rgb.shape[:2])
        plane = plane if plane is not None else self.colour_plane(index, rgb)
        if changed is None:
            frame = self.encode(index, rgb, grid=grid, plane=plane)
            frame.extra["changed_share"] = 1.0
            return frame
        section = colour.to_bytes(plane) if plane is not None else b""
        head = (COMPACT_UPDATE_BYTES if self.compact else UPDATE_BYTES)
        packets = packetize_update(
            grid, changed, (index - 1) % 2**32, self.image_codec.prior(self.level), stream=self.stream,
            frame=index % 2**32, mtu=self.mtu, max_tokens=self.max_tokens, interleave=self.interleave,
            seed=self.frame_seed(index),
            overhead=self.unit_header + head + self.framing, colour=section, colour_copies=self.colour_copies)
        colour_bytes = sum(len(p.colour) for p in packets)
        return EncodedFrame(index, [self.unit(p) for p in packets], self.unit_header + head, f"K={self.level}",
                            frame_type="P", references=(index - 1,), level=self.level,
                            payload_bytes=sum(len(p.payload) for p in packets) + colour_bytes,
                            extra={"grid": grid, "chroma": plane, "colour_bytes": colour_bytes, "coarse_bytes": 0,
                                   "changed": changed, "changed_share": float(changed.mean())})

    def fit(self, index: int, rgb: np.ndarray, budget: int, cost: Callable[[EncodedFrame], int]) -> EncodedFrame:
        """The largest level up to the stream's whose `cost` fits `budget`, else the smallest. A
        temporal stream keeps its level (a P-frame updates tokens of that level): it is coded as it is."""
        if self.temporal is not None:
            return self.encode(index, rgb)
        frame = None
        for level in sorted((k for k in self.image_codec.level_sizes if k <= self.level), reverse=True):
            frame = self.encode(index, rgb, level)
            if cost(frame) <= budget:
                return frame
        return frame

    def lossless(self, frame: EncodedFrame) -> np.ndarray:
        """The frame as decoded with nothing lost."""
        return self.image_codec.decode(frame.extra["grid"], chroma=frame.extra["chroma"])

    def signal(self, frame: EncodedFrame) -> Session:
        """What the sender signals of the stream for `frame`, its coarse layer included (a compact
        packet leaves it out; a receiver expects a frame of that level and size)."""
        grid = frame.extra["grid"]
        return Session(self.stream, grid.level, grid.image_size, self.interleave, self.seed,
                       frame.extra.get("coarse_level", 0))

    # the receiver's side

    def reassembly(self) -> "TokenReassembly":
        return TokenReassembly(self)

    def present(self, arrival: TokenArrival, history: FrameHistory | None = None) -> LossyTokenGrid:
        """The frame's tokens as this receiver knows them before recovery: a P-frame's unchanged
        positions take the previous frame's tokens from `history` (missing where it has none)."""
        lossy = arrival.lossy
        if arrival.changed is None:
            return lossy
        previous = history.previous if history is not None else None
        if previous is None or previous.shape != lossy.grid.shape or previous.level != lossy.grid.level:
            return LossyTokenGrid(lossy.grid, lossy.missing | ~arrival.changed, lossy.cells)
        indices = np.where(arrival.changed, lossy.grid.indices, previous.indices)
        return LossyTokenGrid(TokenGrid(indices, lossy.grid.level, lossy.grid.image_size), lossy.missing, lossy.cells)

    def stale(self, arrival: TokenArrival, history: FrameHistory | None = None) -> np.ndarray | None:
        """A P-frame's positions that arrived unchanged over a token the previous frame guessed."""
        if arrival.changed is None or history is None or history.previous_unsure is None:
            return None
        unsure = history.previous_unsure
        if unsure.shape != arrival.changed.shape:
            return None
        return unsure & ~arrival.changed & ~arrival.lossy.missing

    def recover(self, arrival: TokenArrival, method, history: FrameHistory | None = None) -> np.ndarray:
        """The frame's complete grid: the lost tokens filled by the recovery `method`."""
        return self._fill(self.present(arrival, history), method, history)

    def _fill(self, lossy: LossyTokenGrid, method, history: FrameHistory | None) -> np.ndarray:
        if not lossy.missing.any():
            return lossy.grid.indices
        return method.recover(lossy, self.image_codec.codebook(lossy.grid.level), history=history)

    def render(self, arrival: TokenArrival, filled: np.ndarray, conceal: bool = False,
               lost: np.ndarray | None = None) -> np.ndarray:
        """The picture of a filled grid; `conceal`: the concealing decoder, told what was lost
        (`lost`, default the arrival's missing tokens)."""
        grid = arrival.lossy.grid
        lost = arrival.lossy.missing if lost is None else lost
        lost = lost if conceal and lost.any() else None
        return self.image_codec.decode(TokenGrid(filled, grid.level, grid.image_size), lost, arrival.chroma)

    def decode(self, arrival: TokenArrival, method, history: FrameHistory | None = None) -> DecodedFrame:
        lossy = self.present(arrival, history)
        filled = self._fill(lossy, method, history)
        stale = self.stale(arrival, history)
        rgb = self.render(arrival, filled, method.conceal, lossy.missing)
        guessed = lossy.missing.any() or (stale is not None and stale.any())
        status = FrameStatus.CONCEALED if guessed else FrameStatus.DECODED
        return DecodedFrame(arrival.index, rgb, status, lossy.missing, lossy.loss_rate,
                            TokenGrid(filled, lossy.grid.level, lossy.grid.image_size), stale)


class TokenReassembly:
    """A VQ receiver's state: token packets in, each frame's `TokenArrival` out. A stream with
    compact packets needs what its sender signalled (`expect`); a frame's expected level and size
    also let a frame of which nothing arrived come back (every token lost)."""

    def __init__(self, codec: VQStreamCodec):
        self.codec = codec
        self.depack = Depacketizer(codec.image_codec.prior)
        self.sessions: dict[int, Session] = {}

    @property
    def stats(self):
        return self.depack.stats

    def expect(self, frame: int, session: Session) -> None:
        self.sessions[frame] = session

    def put(self, frame: int, index: int, count: int, unit: bytes) -> str:
        """One unit as the transport delivered it; a malformed one counts as corrupt."""
        if not self.codec.compact:
            return self.depack.add(unit)
        try:
            packet = parse_compact(unit, self.sessions[frame], frame, index, count)
        except (PacketError, KeyError):
            self.depack.stats.corrupt += 1
            return "corrupt"
        return self.depack.add_packet(packet)

    def put_packet(self, packet: Packet) -> str:
        """A packet already parsed (a live receiver that looked at its header first)."""
        return self.depack.add_packet(packet)

    def image_size(self, frame: int) -> tuple[int, int] | None:
        """The frame's size as its packets say, or None where none of them arrived."""
        for coarse in (False, True):
            assembly = self.depack.frames.get((self.codec.stream, frame, coarse))
            if assembly is not None:
                return assembly.image_size
        return None

    def take(self, frame: int) -> TokenArrival:
        """What arrived of `frame`, which the reassembly then forgets."""
        stream, codec = self.codec.stream, self.codec.image_codec
        session = self.sessions.pop(frame, None)
        if session is not None:
            lossy = self.depack.assemble(stream, frame, expected=(session.level, session.image_size))
            if session.coarse:
                cells = self.depack.cells_at(stream, frame, session.coarse, lossy.grid.shape)
                lossy = LossyTokenGrid(lossy.grid, lossy.missing,
                                       CoarseCells(session.coarse, cells, codec.cell_map(session.coarse)))
        else:  # self-describing packets: the layer says its level
            lossy = self._from_packets(frame)
        chroma = self.depack.chroma(stream, frame)
        update = self.depack.update(stream, frame)
        self.depack.forget(stream, frame)
        if update is not None:
            return TokenArrival(frame, lossy, chroma, update[1])
        return TokenArrival(frame, lossy, chroma)

    def _from_packets(self, frame: int) -> LossyTokenGrid:
        """A frame's tokens as its packets describe them, with its coarse layer's cells where one
        arrived (a frame of which only the coarse layer arrived comes back with every token lost)."""
        stream, codec = self.codec.stream, self.codec.image_codec
        arrived = self.depack.cells(stream, frame)
        if arrived is None:
            return self.depack.assemble(stream, frame)
        level, cells = arrived
        base = codec.base_level
        lossy = self.depack.assemble(stream, frame, expected=(base, self.image_size(frame)))
        if (lossy.grid.level != base or level not in codec.level_sizes or level >= base
                or cells.shape != lossy.grid.shape):
            return lossy  # a layer this codec cannot place: ignore it
        return LossyTokenGrid(lossy.grid, lossy.missing, CoarseCells(level, cells, codec.cell_map(level)))

    def forget(self, frame: int) -> None:
        self.sessions.pop(frame, None)
        self.depack.forget(self.codec.stream, frame)


def coarse_units(codec: VQStreamCodec, frame: EncodedFrame, level: int, max_tokens: int | None) -> tuple[list[bytes], int]:
    """The frame's coarse layer (its tokens' cells at `level`) as units, and their payload bytes."""
    grid = frame.extra["grid"]
    packets = codec.image_codec.coarse_packets(
        grid, level, stream=codec.stream, frame=frame.index % 2**32, mtu=codec.mtu,
        interleave=codec.interleave, seed=codec.frame_seed(frame.index), overhead=codec.unit_header + codec.framing,
        max_tokens=max_tokens if max_tokens is not None else coarse_max_tokens(codec.max_tokens))
    return [codec.unit(p) for p in packets], sum(len(p.payload) for p in packets)


__all__ = ["TokenArrival", "TokenReassembly", "VQStreamCodec", "coarse_units"]
