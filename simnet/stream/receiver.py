"""The one receiver of a stream: wire packets come in through the stream's framing, the codec's
reassembly puts each frame's units together, and the codec decodes what arrived with a recovery
method that is handed the stream's history (the frames before, as this receiver showed them)."""

from __future__ import annotations

from collections import deque

import numpy as np

from codec.tokens import FrameHistory, TokenGrid

from ..network.protection import ProtectionError
from .codec import Codec, DecodedFrame
from .sender import Framing

HISTORY_FRAMES = 2  # frames of history kept per recovery method: memory stays flat however long the stream


class StreamReceiver:
    """Receives one stream of `codec`'s frames behind `framing`. Several recovery methods may
    decode the same arrival (a simulation compares them); each keeps its own history."""

    def __init__(self, codec: Codec, framing: Framing | None = None, history: int = HISTORY_FRAMES):
        self.codec = codec
        self.framing = framing or Framing(shim=False)
        self.reassembly = codec.reassembly()
        self.window = history
        self._history: dict[str, deque] = {}

    def expect(self, frame: int, signalled) -> None:
        """What the sender signalled of `frame` (a compact stream's session)."""
        self.reassembly.expect(frame, signalled)

    def put_wire(self, data: bytes) -> str:
        """One packet as it came off the wire; a malformed one counts as corrupt."""
        try:
            frame, index, count, unit = self.framing.open(data)
        except ProtectionError:
            self.reassembly.stats.corrupt += 1
            return "corrupt"
        return self.reassembly.put(frame, index, count, unit)

    def put(self, frame: int, index: int, count: int, unit: bytes) -> str:
        """One unit that the transport (and its protection) delivered."""
        return self.reassembly.put(frame, index, count, unit)

    def take(self, frame: int):
        """What arrived of `frame` (the codec's arrival); the reassembly forgets it."""
        return self.reassembly.take(frame)

    def history(self, method: str) -> FrameHistory:
        past = self._history.get(method, ())
        return FrameHistory(tuple(g for g, _, _ in past), tuple(p for _, p, _ in past), tuple(u for _, _, u in past))

    def shown(self, method: str, grid: TokenGrid | None, picture: np.ndarray | None,
              unsure: np.ndarray | None = None) -> None:
        """Remember what `method` made of the frame just decoded (and which of its tokens were
        guesses), for the next one."""
        self._history.setdefault(method, deque(maxlen=self.window)).append((grid, picture, unsure))

    def recover(self, arrival, method) -> np.ndarray:
        """The arrival's complete grid as `method` fills it, with its history."""
        return self.codec.recover(arrival, method, self.history(method.name))

    def decode(self, arrival, method=None) -> DecodedFrame:
        """Recover, decode and remember: the frame as `method`'s receiver shows it (a codec
        without recovery takes no method)."""
        name = method.name if method is not None else ""
        decoded = self.codec.decode(arrival, method, self.history(name))
        self.shown(name, decoded.tokens, decoded.rgb, unsure(decoded))
        return decoded


def unsure(decoded: DecodedFrame) -> np.ndarray | None:
    """The positions of a decoded frame that are guesses: lost now, or stale."""
    masks = [m for m in (decoded.lost, decoded.stale) if m is not None and m.any()]
    if not masks:
        return None
    return masks[0] | masks[1] if len(masks) == 2 else masks[0]
