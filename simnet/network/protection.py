"""Forward error correction for any codec's packets: Reed-Solomon erasure coding (zfec's C core)
and XOR parity in rows or a 2-D grid (as WebRTC's ULPFEC/FlexFEC), with the small shim header
that tells the receiver which packet of which frame it holds.

Each frame's source packets (the codec's own bytes) travel as they are behind the shim; parity
packets protect blocks made of each source packet's length (2 bytes) and bytes, zero-padded to the
longest, so a recovered packet comes back exactly. Wire format of the shim (6 bytes, little-endian):

    offset size field
    0      1    bit 7: parity (1) or source (0); bits 0-2: scheme (0 none, 1 rs, 2 xor_rows, 3 xor_grid)
    1      2    frame number modulo 65536
    3      1    packet index: of the source packet, or of the parity packet among the parities
    4      1    source packets in the frame
    5      1    parity packets in the frame

The receiver derives every group from (scheme, sources, parities): nothing else is signalled.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

SCHEMES = {"none": 0, "rs": 1, "xor_rows": 2, "xor_grid": 3}
_SCHEME_NAMES = {v: k for k, v in SCHEMES.items()}
_SHIM = struct.Struct("<BHBBB")
SHIM_BYTES = _SHIM.size
MAX_PACKETS = 255  # per frame, sources and parities each (one byte in the shim; zfec's limit is 256 in all)


class ProtectionError(ValueError):
    """A frame that cannot be protected as asked, or a packet whose shim is malformed."""


@dataclass(frozen=True, slots=True)
class Shim:
    parity: bool
    scheme: str
    frame: int
    index: int
    sources: int
    parities: int

    def pack(self) -> bytes:
        flags = (0x80 if self.parity else 0) | SCHEMES[self.scheme]
        return _SHIM.pack(flags, self.frame % 65536, self.index, self.sources, self.parities)


def parse_shim(data: bytes) -> tuple[Shim, bytes]:
    """wire bytes -> (shim, body); ProtectionError for anything malformed."""
    if len(data) < SHIM_BYTES:
        raise ProtectionError(f"truncated packet: {len(data)} bytes, the shim alone is {SHIM_BYTES}")
    flags, frame, index, sources, parities = _SHIM.unpack_from(data)
    scheme = _SCHEME_NAMES.get(flags & 0x07)
    if scheme is None or flags & 0x78:
        raise ProtectionError(f"bad shim flags 0x{flags:02x}")
    parity = bool(flags & 0x80)
    if sources == 0 or index >= (parities if parity else sources):
        raise ProtectionError(f"packet index {index} out of range ({sources} sources, {parities} parities)")
    if scheme == "none" and parities:
        raise ProtectionError("parity packets without a scheme")
    return Shim(parity, scheme, frame, index, sources, parities), data[SHIM_BYTES:]


def parity_count(scheme: str, sources: int, parity: float) -> int:
    """How many parity packets `scheme` sends for `sources` packets at `parity` (parities per source
    packet, e.g. 0.5). xor_grid's count follows from its grid: a row and a column parity per
    row and column of a near-square layout."""
    if scheme == "none" or sources == 0:
        return 0
    if scheme == "xor_grid":
        columns = math.ceil(math.sqrt(sources))
        return columns + math.ceil(sources / columns)
    return max(1, min(MAX_PACKETS, math.ceil(parity * sources - 1e-9))) if parity > 0 else 0


def groups(scheme: str, sources: int, parities: int) -> list[list[int]]:
    """For XOR schemes, the source indices each parity packet covers (parity j: groups[j]).
    xor_rows: consecutive runs; xor_grid: rows of the layout, then its columns."""
    if scheme == "xor_rows":
        size = math.ceil(sources / parities)
        return [list(range(r * size, min(sources, (r + 1) * size))) for r in range(parities)]
    if scheme == "xor_grid":
        columns = math.ceil(math.sqrt(sources))
        rows = math.ceil(sources / columns)
        if rows + columns != parities:
            raise ProtectionError(f"xor_grid over {sources} sources has {rows + columns} parities, not {parities}")
        return ([list(range(r * columns, min(sources, (r + 1) * columns))) for r in range(rows)]
                + [list(range(c, sources, columns)) for c in range(columns)])
    raise ProtectionError(f"scheme {scheme!r} has no XOR groups")


def _blocks(packets: list[bytes]) -> list[bytes]:
    longest = max(len(p) for p in packets) + 2
    return [struct.pack("<H", len(p)) + p + bytes(longest - 2 - len(p)) for p in packets]


def _unblock(block: bytes) -> bytes:
    (n,) = struct.unpack_from("<H", block)
    if n > len(block) - 2:
        raise ProtectionError("recovered block names a length past its end")
    return block[2:2 + n]


def _xor(blocks: list[bytes]) -> bytes:
    out = np.zeros(max(len(b) for b in blocks), dtype=np.uint8)
    for b in blocks:
        out[:len(b)] ^= np.frombuffer(b, dtype=np.uint8)
    return out.tobytes()


def protect(packets: list[bytes], frame: int, scheme: str = "none", parity: float = 0.0) -> tuple[list[bytes], list[bytes]]:
    """A frame's source packets -> (source wire packets, parity wire packets), each behind its shim."""
    n = len(packets)
    if scheme not in SCHEMES:
        raise ProtectionError(f"unknown FEC scheme {scheme!r} (expected one of {', '.join(SCHEMES)})")
    if not 1 <= n <= MAX_PACKETS:
        raise ProtectionError(f"a frame of {n} packets: FEC works on 1..{MAX_PACKETS} per frame")
    if any(len(p) > 65535 for p in packets):
        raise ProtectionError("a source packet over 65535 bytes")
    m = parity_count(scheme, n, parity)
    if n + m > 256 and scheme == "rs":
        raise ProtectionError(f"Reed-Solomon over {n} + {m} packets: at most 256 in all")
    sources = [Shim(False, scheme, frame, i, n, m).pack() + p for i, p in enumerate(packets)]
    if m == 0:
        return sources, []
    blocks = _blocks(packets)
    if scheme == "rs":
        import zfec

        coded = zfec.Encoder(n, n + m).encode(blocks)[n:]
    else:
        coded = [_xor([blocks[i] for i in group]) for group in groups(scheme, n, m)]
    return sources, [Shim(True, scheme, frame, j, n, m).pack() + bytes(c) for j, c in enumerate(coded)]


def recover(scheme: str, sources: int, parities: int, got_sources: dict[int, bytes],
            got_parities: dict[int, bytes]) -> dict[int, bytes]:
    """The source packets a receiver holds after FEC: those that arrived and those the parities
    rebuild. `got_*` map packet index -> body (the bytes after the shim)."""
    out = dict(got_sources)
    if len(out) == sources or not got_parities or scheme == "none":
        return out
    if scheme == "rs":
        if len(out) + len(got_parities) < sources:
            return out  # fewer than k of the n: nothing can be rebuilt
        import zfec

        longest = max(len(b) for b in got_parities.values())
        have = sorted(out)[:sources]
        blocks = [struct.pack("<H", len(out[i])) + out[i] + bytes(longest - 2 - len(out[i])) for i in have]
        indices = list(have)
        for j in sorted(got_parities):
            if len(blocks) == sources:
                break
            blocks.append(got_parities[j])
            indices.append(sources + j)
        decoded = zfec.Decoder(sources, sources + parities).decode(blocks, indices)
        for i, block in enumerate(decoded):
            if i not in out:
                out[i] = _unblock(bytes(block))
        return out
    covered = groups(scheme, sources, parities)
    progress = True
    while progress and len(out) < sources:  # peel: a parity with one source missing rebuilds it
        progress = False
        for j, body in got_parities.items():
            missing = [i for i in covered[j] if i not in out]
            if len(missing) == 1:
                present = [struct.pack("<H", len(out[i])) + out[i] for i in covered[j] if i in out]
                out[missing[0]] = _unblock(_xor([body, *present]))
                progress = True
    return out


def adaptive_parity(sources: int, loss: float, target: float = 0.01) -> int:
    """The fewest Reed-Solomon parities for which a frame of `sources` packets is lost (more than
    the parities lost of sources + parities) with probability at most `target` under independent
    loss at `loss`: the receiver-reported loss sets the FEC strength, as WebRTC's protection
    tables do."""
    if loss <= 0:
        return 0
    from math import comb

    for m in range(0, MAX_PACKETS - sources + 1):
        n = sources + m
        fail = sum(comb(n, j) * loss ** j * (1 - loss) ** (n - j) for j in range(m + 1, n + 1))
        if fail <= target:
            return m
    return MAX_PACKETS - sources
