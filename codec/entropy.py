"""Lossless coding of VQ indices with constriction's ANS coder and a fixed categorical prior.

A `Prior` is the probability of each code at one codebook level, learned as the smoothed index
histogram of the training split. It has no context, so any subset of tokens can be coded and
decoded on its own: every packet is independently decodable.
"""

from __future__ import annotations

import numpy as np
import constriction

# constriction quantises probabilities to 24 bits; a floor keeps every code encodable.
_MIN_PROBABILITY = 1e-6


class EntropyError(ValueError):
    """Compressed data that does not decode to the expected number of valid symbols."""


class Prior:
    def __init__(self, counts: np.ndarray):
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size < 2 or np.any(counts < 0) or not np.isfinite(counts).all():
            raise ValueError("prior counts must be a 1-D array of >= 2 non-negative numbers")
        p = (counts + 0.5) / (counts + 0.5).sum()  # Krichevsky-Trofimov smoothing
        p = np.maximum(p, _MIN_PROBABILITY)
        self.probabilities = p / p.sum()
        self.counts = counts
        self._model = constriction.stream.model.Categorical(self.probabilities, perfect=False)

    @classmethod
    def uniform(cls, size: int) -> "Prior":
        return cls(np.ones(size))

    @property
    def size(self) -> int:
        return self.probabilities.size

    def information_bits(self, symbols: np.ndarray) -> float:
        """The ideal code length of `symbols` under this prior (the cross-entropy, in bits)."""
        return float(-np.log2(self.probabilities[np.asarray(symbols, dtype=np.int64)]).sum())

    def entropy_bits(self) -> float:
        p = self.probabilities
        return float(-(p * np.log2(p)).sum())


def encode_symbols(symbols: np.ndarray, prior: Prior) -> bytes:
    symbols = np.asarray(symbols, dtype=np.int32).ravel()
    if symbols.size and (symbols.min() < 0 or symbols.max() >= prior.size):
        raise ValueError(f"symbols outside [0, {prior.size})")
    coder = constriction.stream.stack.AnsCoder()
    if symbols.size:
        coder.encode_reverse(symbols, prior._model)
    return coder.get_compressed().astype("<u4").tobytes()


def decode_symbols(data: bytes, count: int, prior: Prior) -> np.ndarray:
    if len(data) % 4:
        raise EntropyError(f"compressed length {len(data)} is not a whole number of 32-bit words")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        out = np.asarray(coder.decode(prior._model, count), dtype=np.int64)
    except Exception as e:  # constriction raises plain errors on exhausted or invalid data
        raise EntropyError(f"entropy decoding failed ({e})") from None
    if not coder.is_empty():
        raise EntropyError("entropy decoding left unused data: wrong symbol count or prior")
    return out
