"""Temporal token coding: which tokens a P-frame updates against the previous frame (the rate
knob that stops tokens flickering), which positions a refresh forces, and the P-frame payload
(skip flags and new indices) as ANS-coded bytes.

A P-frame sends, for each position in a packet's run of the interleaved order, a skip flag (0: the
previous frame's token stands, 1: a new index follows) and the new indices of the flagged ones.
The flags are coded under a Bernoulli model whose probability rides in the packet (the frame's
share of changed tokens, 16 bits), the indices under the level's prior. Neither model depends on
the previous frame's tokens: a receiver that lost some of them (and guessed) still decodes every
P packet that arrives, and knows exactly which of its tokens are guesses (docs/bitstream.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import constriction

from .entropy import EntropyError, Prior, decode_symbols
from .levels import Level

# the rate knob's default: chosen on training clips (football, ice: 20 frames each, at most
# 0.3 dB below intra-only coding), never on the clips figures are reported for (docs/models.md)
DEFAULT_THRESHOLD = 4.0

# the probability of a changed token, as the packet carries it: a 16-bit fraction kept away from
# 0 and 1 so that every flag stays codable
PROBABILITY_ONE = 1 << 16


def quantise_probability(p: float) -> int:
    return int(np.clip(round(p * PROBABILITY_ONE), 1, PROBABILITY_ONE - 1))


def _flag_model(q: int):
    p = q / PROBABILITY_ONE
    return constriction.stream.model.Categorical(np.array([1.0 - p, p]), perfect=False)


def encode_update(flags: np.ndarray, indices: np.ndarray, q: int, prior: Prior) -> bytes:
    """A run's skip flags (0/1) and the new indices of its flagged positions -> payload bytes.
    The flags decode first, then the indices (ANS is a stack: they are pushed in reverse)."""
    flags = np.asarray(flags, dtype=np.int32).ravel()
    indices = np.asarray(indices, dtype=np.int32).ravel()
    if int(flags.sum()) != indices.size:
        raise ValueError(f"{int(flags.sum())} flagged positions but {indices.size} new indices")
    if indices.size and (indices.min() < 0 or indices.max() >= prior.size):
        raise ValueError(f"indices outside [0, {prior.size})")
    coder = constriction.stream.stack.AnsCoder()
    if indices.size:
        coder.encode_reverse(indices, prior._model)
    if flags.size:
        coder.encode_reverse(flags, _flag_model(q))
    return coder.get_compressed().astype("<u4").tobytes()


def decode_update(data: bytes, count: int, q: int, prior: Prior) -> tuple[np.ndarray, np.ndarray]:
    """Payload bytes of a run of `count` positions -> (flags (count,) bool, new indices)."""
    if len(data) % 4:
        raise EntropyError(f"compressed length {len(data)} is not a whole number of 32-bit words")
    if not 1 <= q < PROBABILITY_ONE:
        raise EntropyError(f"change probability {q} outside [1, {PROBABILITY_ONE})")
    if count == 0:
        return np.zeros(0, dtype=bool), decode_symbols(data, 0, prior)
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        flags = np.asarray(coder.decode(_flag_model(q), count), dtype=bool)
        changed = int(flags.sum())
        indices = np.asarray(coder.decode(prior._model, changed), dtype=np.int64) if changed else np.zeros(0, np.int64)
    except Exception as e:  # constriction raises plain errors on exhausted or invalid data
        raise EntropyError(f"entropy decoding failed ({e})") from None
    if not coder.is_empty():
        raise EntropyError("entropy decoding left unused data: wrong position count or model")
    return flags, indices


def update_bits(flags: np.ndarray, indices: np.ndarray, q: int, prior: Prior) -> np.ndarray:
    """Each position's ideal code length under the update's models, (n,) bits: what packetizing
    splits runs by."""
    p = q / PROBABILITY_ONE
    flags = np.asarray(flags, dtype=bool).ravel()
    bits = np.where(flags, -np.log2(p), -np.log2(1 - p))
    new = -np.log2(prior.probabilities[np.asarray(indices, dtype=np.int64)])
    bits[flags] += new
    return bits


@dataclass(frozen=True)
class Refresh:
    """How a token stream bounds how long a loss lasts. "periodic": an I-frame every `period`
    frames; "rolling": every P-frame also sends a band of columns whatever changed, the band moving
    on so that every position is sent at least once in `period` frames; "none": only the first
    frame is intra."""
    mode: str = "periodic"
    period: int = 30

    def __post_init__(self):
        if self.mode not in ("periodic", "rolling", "none"):
            raise ValueError(f"refresh mode {self.mode!r}: expected periodic, rolling or none")
        if self.period < 1:
            raise ValueError(f"refresh period {self.period}: at least 1 frame")

    def intra(self, frame: int) -> bool:
        """Whether frame `frame` of the stream is an I-frame."""
        return frame == 0 or (self.mode == "periodic" and frame % self.period == 0)

    def forced(self, frame: int, shape: tuple[int, int]) -> np.ndarray:
        """The positions a P-frame sends whatever changed: the rolling band of its columns."""
        forced = np.zeros(shape, dtype=bool)
        if self.mode == "rolling":
            width = shape[1]
            band = -(-width // self.period)
            start = ((frame - 1) % self.period) * band
            forced[:, start % width: min(width, start % width + band)] = True
        return forced


def choose_update(latent: torch.Tensor, reference: np.ndarray, level: Level, threshold: float,
                  forced: np.ndarray | None = None, rate_lambda: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The P-frame's tokens against `reference` (the previous frame's, as the sender assumes the
    receiver holds them) -> (the new grid, the changed mask). A position takes the encoder's new
    code only where it lowers that position's latent distortion by more than `threshold` times
    the frame's mean quantisation error under the new codes (0: wherever the code differs);
    `forced` positions take it regardless (a refresh). The new codes' error is the scale: it
    stays put when the picture moves, where the reference's error grows with the motion."""
    d, h, w = latent.shape
    flat = latent.permute(1, 2, 0).reshape(-1, d)
    new = level.assign(flat, rate_lambda).numpy().reshape(h, w)
    ref = np.asarray(reference, dtype=np.int64)
    if ref.shape != (h, w):
        raise ValueError(f"reference grid {ref.shape} is not the frame's {(h, w)}")
    differs = new != ref
    if threshold > 0:
        cb = level.codebook
        d_new = (flat - cb[torch.from_numpy(new.ravel())]).pow(2).sum(1)
        d_ref = (flat - cb[torch.from_numpy(ref.ravel())]).pow(2).sum(1)
        gain = ((d_ref - d_new) > threshold * float(d_new.mean())).numpy().reshape(h, w)
        differs &= gain
    changed = differs | (forced if forced is not None else False)
    return np.where(changed, new, ref), changed


class TemporalCoder:
    """A stream's sender-side token state: each frame's tokens at `level`, an I-frame where the
    refresh says so, else a P-frame updating the previous frame's tokens (`choose_update`). The
    reference is the sender's own previous grid: what a receiver holds when nothing was lost."""

    def __init__(self, image_codec, level: int, threshold: float = DEFAULT_THRESHOLD,
                 refresh: Refresh = Refresh()):
        self.image_codec, self.level, self.threshold, self.refresh = image_codec, level, threshold, refresh
        self.reference: np.ndarray | None = None
        self.last: int | None = None  # the frame the reference belongs to

    def code(self, index: int, rgb: np.ndarray, resend: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
        """Frame `index` (frames come in order) -> (its grid, the changed mask; None: an I-frame).
        `resend`: positions a P-frame sends whatever changed (those a receiver said it lacks)."""
        latent = self.image_codec.latent(rgb)
        lvl = self.image_codec.level(self.level)
        shape = tuple(latent.shape[1:])
        if (self.refresh.intra(index) or self.reference is None or self.reference.shape != shape
                or self.last != index - 1):
            d = latent.shape[0]
            grid = lvl.assign(latent.permute(1, 2, 0).reshape(-1, d)).numpy().reshape(shape)
            changed = None
        else:
            forced = self.refresh.forced(index, shape)
            if resend is not None and resend.shape == shape:
                forced |= resend
            grid, changed = choose_update(latent, self.reference, lvl, self.threshold, forced)
        self.reference, self.last = grid, index
        return grid, changed
