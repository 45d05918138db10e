"""The interface every codec of a stream implements (the VQ token codec, Pillow's still-image
codecs, the video codecs to come), what it hands the sender and gets back from the receiver, and
the registry that names codecs in scenario files."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Protocol

import numpy as np


class FrameStatus(str, Enum):
    """What the receiver could make of a frame."""
    DECODED = "decoded"  # every unit the sender sent was there
    REPAIRED = "repaired"  # units were lost and protection (FEC, NACK, a coarse layer) put them back
    CONCEALED = "concealed"  # units were lost for good and the decoder guessed what they held
    UNDECODABLE = "undecodable"  # nothing to show: the receiver repeats the last frame it showed


@dataclass
class EncodedFrame:
    """One frame as a codec sends it: its units (packets without transport framing), in order."""
    index: int
    units: list[bytes]
    unit_header: int  # bytes of codec header in each unit (0 for a file cut into pieces)
    choice: str  # the rate the codec chose: "K=1024", "d2 q=37"
    frame_type: str = "I"  # I: decodable alone; P: needs the frames in `references`
    references: tuple[int, ...] = ()
    level: int | None = None  # a VQ frame's level
    payload_bytes: int = 0  # the units' bytes less their headers
    extra: dict = field(default_factory=dict)  # what only this codec's receiver needs to know of the frame

    @property
    def skipped(self) -> bool:
        """Nothing was sent (the frame fitted no budget)."""
        return not self.units


@dataclass
class DecodedFrame:
    """What the receiver shows for a frame, and how it got it."""
    index: int
    rgb: np.ndarray | None  # None: undecodable
    status: FrameStatus
    lost: np.ndarray | None = None  # the positions the decoder had to guess (VQ: lost tokens)
    loss_rate: float | None = None  # the share of the frame's content lost (VQ: tokens)
    tokens: object | None = None  # a token codec's complete grid as decoded (codec.tokens.TokenGrid)
    # a token stream's P-frame: positions that arrived as "unchanged" over a token the receiver
    # had guessed in an earlier frame, so still a guess
    stale: np.ndarray | None = None


class Codec(Protocol):
    """A codec of a stream. The sender side codes a frame at a given choice or fits it into a byte
    budget, and says what the receiver is told of it; the receiver side reassembles what arrived
    of a frame and decodes it."""

    name: str

    def encode(self, index: int, rgb: np.ndarray, choice=None) -> EncodedFrame: ...

    def fit(self, index: int, rgb: np.ndarray, budget: int, cost: Callable[[EncodedFrame], int]) -> EncodedFrame:
        """The best choice whose `cost` (its bytes on the wire, protection included) fits `budget`,
        else the cheapest one."""

    def signal(self, frame: EncodedFrame):
        """What the sender signals of `frame` to its receiver (`Reassembly.expect`)."""

    def reassembly(self) -> "Reassembly": ...

    def decode(self, arrival, method=None, history=None) -> DecodedFrame:
        """The frame as shown from what arrived (`Reassembly.take`), with a recovery `method` and the
        stream's `history` where the codec uses them."""


class Reassembly(Protocol):
    """A receiver's state of one stream for one codec: units in, a frame's arrival out."""

    def expect(self, frame: int, signalled) -> None: ...

    def put(self, frame: int, index: int, count: int, unit: bytes) -> str:
        """One unit of `frame` (its `index` of `count`); -> "ok" or why it was not taken."""

    def take(self, frame: int):
        """What arrived of `frame`, which the reassembly then forgets."""

    def forget(self, frame: int) -> None: ...


CODECS: dict[str, type] = {}


def register_codec(*names: str):
    """Class decorator: the codec is built by `make_codec(name, ...)` for each of `names`."""
    def register(cls):
        for name in names:
            if name in CODECS:
                raise ValueError(f"codec {name!r} is registered twice")
            CODECS[name] = cls
        return cls
    return register


def codec_names() -> list[str]:
    return sorted(CODECS)


def make_codec(name: str, **config) -> Codec:
    """The codec registered as `name`, built with `config` (its own keyword arguments)."""
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r} (have {codec_names()})")
    return CODECS[name](name=name, **config)
