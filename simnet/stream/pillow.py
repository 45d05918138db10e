"""Pillow's still-image codecs (AVIF, WebP, JPEG) as stream codecs: a frame is one file, coded at a
downscaling factor and a quality, cut into MTU-sized pieces; a frame with a piece missing cannot
be decoded. An AVIF frame sends only its AV1 bitstream: the container is the session's, told
once (as RTP's AV1 payload format does)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np

from codec import classical
from .codec import DecodedFrame, EncodedFrame, FrameStatus, register_codec

FORMATS = {"avif": "AVIF", "webp": "WEBP", "jpeg": "JPEG"}
FACTORS = (1, 2, 3, 4, 6, 8)  # the downscaling factors a rate search tries, from `downscale` on
CACHED_CODINGS = 512


@register_codec(*FORMATS)
class PillowStreamCodec:
    """`name` (avif, webp, jpeg) at 1/`downscale` of the size or smaller, upscaled back (Lanczos)
    at the receiver; pieces of at most `piece` bytes."""

    def __init__(self, *, name: str, piece: int, downscale: int = 1):
        self.name, self.format, self.piece, self.downscale = name, FORMATS[name], piece, downscale
        # (frame, factor, q) -> (sent, decoded): a rate search and the comparison's points ask again;
        # bounded, so a long stream does not keep its frames
        self._coded: OrderedDict[tuple, tuple[bytes, np.ndarray]] = OrderedDict()
        self._containers: dict[int, bytes] = {}  # AVIF container template per downscaling factor

    def coded(self, index: int, rgb: np.ndarray, factor: int, quality: int) -> tuple[bytes, np.ndarray]:
        """(the bytes sent, the picture they decode to) of the frame at (factor, quality)."""
        key = (index, factor, quality)
        if key in self._coded:
            self._coded.move_to_end(key)
        else:
            small = classical.shrink(rgb, factor)
            data = classical.encode(small, self.format, quality)
            decoded = classical.decode(data, rgb.shape[:2])
            if self.format == "AVIF":  # send the AV1 bitstream; the container is the session's
                if factor not in self._containers:
                    self._containers[factor] = classical.split_avif(classical.encode(small, self.format, 0))[0]
                payload = classical.split_avif(data)[1]
                if classical.join_avif(self._containers[factor], payload) == data:
                    data = payload
            self._coded[key] = data, decoded
            if len(self._coded) > CACHED_CODINGS:
                self._coded.popitem(last=False)
        return self._coded[key]

    def encode(self, index: int, rgb: np.ndarray, choice: tuple[int, int] | None = None) -> EncodedFrame:
        """The frame at `choice` = (downscaling factor, quality); None: the codec's downscaling at
        the lowest quality (a rate search, `fit`, is how a stream chooses)."""
        factor, quality = choice or (self.downscale, 0)
        data, _ = self.coded(index, rgb, factor, quality)
        units = [data[i:i + self.piece] for i in range(0, len(data), self.piece)] or [b""]
        return EncodedFrame(index, units, 0, f"d{factor} q={quality}", payload_bytes=len(data),
                            extra={"choice": (factor, quality), "size": rgb.shape[:2]})

    def fit(self, index: int, rgb: np.ndarray, budget: int, cost: Callable[[EncodedFrame], int]) -> EncodedFrame:
        """The least downscaling, then the highest quality, whose `cost` fits `budget`; else the
        lowest quality at the largest factor."""
        cheapest = None
        for factor in (f for f in FACTORS if f >= self.downscale):
            lo, hi, best = 0, 100, None
            while lo <= hi:  # the file grows with the quality
                q = (lo + hi) // 2
                frame = self.encode(index, rgb, (factor, q))
                if cost(frame) <= budget:
                    best, lo = frame, q + 1
                else:
                    hi = q - 1
            if best is not None:
                return best
            cheapest = self.encode(index, rgb, (factor, 0))
        return cheapest

    def reassembly(self) -> "FileReassembly":
        return FileReassembly()

    def signal(self, frame: EncodedFrame) -> "FileSession":
        """What the receiver is told of `frame`: its pieces, its choice and its size (the AVIF
        container of that choice is the session's)."""
        return FileSession(len(frame.units), frame.extra["choice"], frame.extra["size"])

    def decode(self, arrival: "FileArrival", method=None, history=None) -> DecodedFrame:
        """The picture of the file that arrived, upscaled to its size; undecodable where a piece
        is missing. The bytes the sender sent decode to the picture it made of them, which is
        reused. A file codec has no recovery: `method` and `history` are not used."""
        if arrival.data is None:
            return DecodedFrame(arrival.index, None, FrameStatus.UNDECODABLE)
        factor, quality = arrival.session.choice
        sent, picture = self._coded.get((arrival.index, factor, quality), (None, None))
        if arrival.data != sent:
            data = arrival.data
            if self.format == "AVIF":
                data = classical.join_avif(self._containers[factor], data)
            picture = classical.decode(data, arrival.session.size)
        return DecodedFrame(arrival.index, picture, FrameStatus.DECODED, loss_rate=0.0)


@dataclass(frozen=True)
class FileSession:
    count: int  # pieces
    choice: tuple[int, int]  # (downscaling factor, quality)
    size: tuple[int, int]  # (height, width) shown


@dataclass
class FileArrival:
    index: int
    data: bytes | None  # the file, None where a piece is missing
    session: FileSession | None


class FileReassembly:
    """A file codec's receiver: the pieces of each frame by index; a frame is whole or nothing."""

    def __init__(self):
        self.frames: dict[int, dict[int, bytes]] = {}
        self.sessions: dict[int, FileSession] = {}

    def expect(self, frame: int, session: FileSession) -> None:
        self.sessions[frame] = session

    def put(self, frame: int, index: int, count: int, unit: bytes) -> str:
        pieces = self.frames.setdefault(frame, {})
        if index in pieces:
            return "duplicate"
        pieces[index] = unit
        return "ok"

    def take(self, frame: int) -> FileArrival:
        """The frame's file where every piece the sender signalled arrived (data None otherwise)."""
        pieces, session = self.frames.pop(frame, {}), self.sessions.pop(frame, None)
        whole = session is not None and all(i in pieces for i in range(session.count))
        return FileArrival(frame, b"".join(pieces[i] for i in range(session.count)) if whole else None, session)

    def forget(self, frame: int) -> None:
        self.frames.pop(frame, None)
        self.sessions.pop(frame, None)
