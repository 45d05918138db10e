"""The one sender of a stream: a frame is coded by the stream's codec, passes the layers that add
units to it (the coarse layer), and leaves through its framing (the transport shim, with FEC
parities where the stream is protected) as wire packets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..network.protection import SHIM_BYTES, ProtectionError, parse_shim, protect
from .codec import Codec, EncodedFrame
from .vq import VQStreamCodec, coarse_units


class CoarseLayer:
    """Each token's cell at the smaller level `level`, sent again in packets of its own after the
    frame's (codec/packets.py), on frames at the codec's base level only (only its codes lie in
    one cell of each smaller level). For token codecs: a codec without tokens has no cells."""

    def __init__(self, level: int, max_tokens: int | None = None):
        self.level, self.max_tokens = level, max_tokens

    def applies(self, codec, frame: EncodedFrame) -> bool:
        return bool(self.level) and frame.level == codec.image_codec.base_level

    def __call__(self, codec, frame: EncodedFrame) -> EncodedFrame:
        if not isinstance(codec, VQStreamCodec):
            raise ValueError(f"the coarse layer sends token cells; codec {codec.name!r} has no tokens")
        if not self.applies(codec, frame):
            return frame
        units, payload = coarse_units(codec, frame, self.level, self.max_tokens)
        return replace(frame, units=frame.units + units, choice=f"{frame.choice}+{self.level}",
                       payload_bytes=frame.payload_bytes + payload,
                       extra={**frame.extra, "coarse_bytes": payload, "coarse_level": self.level})


@dataclass
class WireFrame:
    """A frame as it goes on the wire: its sources (the codec's units in their framing) and the
    parities that protect them."""
    index: int
    sources: list[bytes]
    parities: list[bytes]

    @property
    def packets(self) -> list[bytes]:
        return self.sources + self.parities


class Framing:
    """How units travel: `shim` False: as they are (self-describing packets); True: behind the
    6-byte transport shim that numbers them (network.protection), with `fec` parities."""

    def __init__(self, shim: bool, fec: str = "none", parity: float = 0.0):
        if not shim and fec != "none":
            raise ValueError("FEC parities travel behind the transport shim")
        self.shim, self.fec, self.parity = shim, fec, parity

    @property
    def bytes_per_unit(self) -> int:
        return SHIM_BYTES if self.shim else 0

    def __call__(self, frame: EncodedFrame, fec: str | None = None, parity: float | None = None) -> WireFrame:
        if not self.shim:
            return WireFrame(frame.index, list(frame.units), [])
        if frame.skipped:
            return WireFrame(frame.index, [], [])
        sources, parities = protect(frame.units, frame.index, self.fec if fec is None else fec,
                                    self.parity if parity is None else parity)
        return WireFrame(frame.index, sources, parities)

    def open(self, data: bytes) -> tuple[int | None, int | None, int | None, bytes]:
        """A source packet off the wire -> (frame, index, count, unit); None where the unit says
        them itself. ProtectionError where the shim is malformed."""
        if not self.shim:
            return None, None, None, data
        shim, body = parse_shim(data)
        if shim.parity:
            raise ProtectionError("a parity packet carries no unit")
        return shim.frame, shim.index, shim.sources, body


class StreamSender:
    """One stream's sender: codec, then its layers, then its framing."""

    def __init__(self, codec: Codec, layers: list[Callable] = (), framing: Framing | None = None):
        self.codec, self.layers = codec, list(layers)
        self.framing = framing or Framing(shim=False)

    def layered(self, frame: EncodedFrame) -> EncodedFrame:
        for layer in self.layers:
            frame = layer(self.codec, frame)
        return frame

    def encode(self, index: int, rgb: np.ndarray | None, choice=None, **kwargs) -> EncodedFrame:
        """The frame coded at `choice` (None: the codec's own), with its layers."""
        return self.layered(self.codec.encode(index, rgb, choice, **kwargs))

    def fit(self, index: int, rgb: np.ndarray, budget: int, cost: Callable[[EncodedFrame], int]) -> EncodedFrame:
        """The codec's best choice whose layered frame's `cost` fits `budget`, with its layers."""
        return self.layered(self.codec.fit(index, rgb, budget, lambda f: cost(self.layered(f))))

    def send(self, index: int, rgb: np.ndarray | None, choice=None) -> tuple[EncodedFrame, WireFrame]:
        frame = self.encode(index, rgb, choice)
        return frame, self.framing(frame)
