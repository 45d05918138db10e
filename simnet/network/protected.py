"""A stream under classical protection in the SimPy model: FEC parities sent with each frame, and
NACK retransmission over a reverse path with its own delay and loss.

    ProtectedSource -> Port -> Link -> FecDecoder -> NackRequester
          ^                                                 |
          +------------- Link (reverse: NACKs) <------------+

Each is an element with `put` and an `out`; the port and link are the channel's forward path
(network.channel.forward_path), the NACK requester is there only where the stream uses NACKs.

The receiver knows the frame schedule (frame i is due at i / fps, as RTP timestamps tell it) and
the FEC scheme (from the shim). It asks for a missing source packet when a later one of the same
frame arrives (a gap) or when the frame should have arrived in full, only for what the parities
cannot rebuild, and again after a retransmission timeout; the sender retransmits only while the
copy can still arrive before the frame's deadline, within the frame's retransmission budget
and at most `max_retries` times per packet. Retransmissions draw on a credit that every frame's
reserve (its budget less what its first transmission took) adds to when the frame is sent, so an
unused reserve serves later frames and the stream never spends more than its frames' budgets.
Every byte on the forward path is counted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import simpy

from ..seeds import element_seed
from .config import ChannelConfig
from .elements import Link, SimPacket
from .channel import cross_traffic, forward_path
from .loss_models import Bernoulli
from .protection import ProtectionError, parse_shim, recover

NACK_BYTES = 8  # a NACK's fixed part on the reverse path: frame (2), count (2), 4 bytes of transport


@dataclass
class ProtectedFrame:
    """One frame as the sender emits it: wire packets (shim + bytes) and the retransmission budget."""
    sources: list[bytes]
    parities: list[bytes]
    retransmit_budget: int = 0  # bytes this frame adds to the retransmission credit


@dataclass
class FrameResult:
    """What the receiver holds of one frame at its deadline, and what the frame cost on the wire."""
    recovered: dict[int, bytes]  # source index -> codec bytes (arrived or rebuilt)
    sources: int
    complete_at: float | None  # seconds after the frame's time when every source was held
    bytes_source: int = 0  # first transmissions of source packets, shim included
    bytes_parity: int = 0
    bytes_retransmitted: int = 0
    retransmissions: int = 0
    nacks_sent: int = 0
    arrived_sources: int = 0  # before FEC
    # seconds after the frame's time when the receiver shows it: when complete; else, with NACKs,
    # at the deadline (a retransmission may still come), without them once the frame should
    # have arrived (nothing more will)
    shown_at: float = 0.0

    @property
    def residual_loss(self) -> float:
        return 1 - len(self.recovered) / self.sources if self.sources else 1.0


@dataclass
class ProtectionOptions:
    nack: bool = False
    max_retries: int = 2
    nack_after_fec: bool = False  # hybrid: ask only for what the parities cannot rebuild
    reverse_delay: float = 0.03
    reverse_loss: float = 0.0


class ProtectedSource:
    """Emits each frame's sources then parities at the frame's time; answers NACKs (`put`)."""

    def __init__(self, env: simpy.Environment, frames: list[ProtectedFrame], fps: float, deadline: float,
                 forward_delay: float, rate_bps: float, results: list[FrameResult], max_retries: int, out=None,
                 trace: list | None = None):
        self.env, self.frames, self.fps, self.deadline, self.out = env, frames, fps, deadline, out
        self.forward_delay, self.rate, self.results, self.max_retries = forward_delay, rate_bps, results, max_retries
        self.retries: dict[tuple[int, int], int] = {}
        self.credit = 0  # bytes of retransmission the frames sent so far have left unspent
        self.trace = trace  # (frame, index, sent, expected arrival) of every retransmission
        self.seq = 0
        self.action = env.process(self.run())

    def frame_time(self, frame: int) -> float:
        return frame / self.fps

    def _send(self, data: bytes, frame: int, index: int) -> None:
        self.out.put(SimPacket(data, len(data), frame, index, self.env.now, 0, self.seq))
        self.seq += 1

    def run(self):
        for i, f in enumerate(self.frames):
            delay = self.frame_time(i) - self.env.now
            if delay > 0:
                yield self.env.timeout(delay)
            for j, data in enumerate(f.sources):
                self._send(data, i, j)
                self.results[i].bytes_source += len(data)
            for j, data in enumerate(f.parities):
                self._send(data, i, len(f.sources) + j)
                self.results[i].bytes_parity += len(data)
            self.credit += f.retransmit_budget

    def put(self, nack: SimPacket) -> None:
        """A NACK arrived: resend what can still arrive in time and fits the budget."""
        frame = nack.frame
        f = self.frames[frame]
        (count,) = struct.unpack_from("<H", nack.data)
        wanted = list(range(len(f.sources))) if count == 0xFFFF else list(
            struct.unpack_from(f"<{count}B", nack.data, 2))
        due = self.frame_time(frame) + self.deadline
        for j in wanted:
            data = f.sources[j]
            arrives = self.env.now + len(data) * 8 / self.rate + self.forward_delay
            if (arrives > due or self.retries.get((frame, j), 0) >= self.max_retries
                    or len(data) > self.credit):
                continue
            self.retries[(frame, j)] = self.retries.get((frame, j), 0) + 1
            self.credit -= len(data)
            self.results[frame].bytes_retransmitted += len(data)
            self.results[frame].retransmissions += 1
            if self.trace is not None:
                self.trace.append((frame, j, self.env.now, arrives))
            self._send(data, frame, j)


class FecDecoder:
    """The receiving end's first element: drops what a UDP checksum or the shim refuses and what
    comes after the frame's deadline, keeps each frame's sources and parities, rebuilds sources
    from parities (`held`), marks when a frame is complete, and passes each packet's shim on to
    `out` (the NACK requester, where the stream uses NACKs)."""

    def __init__(self, env: simpy.Environment, n_frames: int, fps: float, deadline: float,
                 results: list[FrameResult], out=None):
        self.env, self.fps, self.deadline, self.results, self.out = env, fps, deadline, results, out
        self.got_sources: list[dict[int, bytes]] = [{} for _ in range(n_frames)]
        self.got_parities: list[dict[int, bytes]] = [{} for _ in range(n_frames)]
        self.layout: list[tuple[str, int, int] | None] = [None] * n_frames
        self.late = 0

    def frame_time(self, frame: int) -> float:
        return frame / self.fps

    def put(self, packet: SimPacket) -> None:
        if packet.corrupted or packet.flow != 0:
            return  # a UDP checksum drops a corrupted datagram
        try:
            shim, body = parse_shim(packet.data)
        except ProtectionError:
            return
        frame = packet.frame
        now = self.env.now
        if now > self.frame_time(frame) + self.deadline:
            self.late += 1
            return
        self.layout[frame] = (shim.scheme, shim.sources, shim.parities)
        (self.got_parities if shim.parity else self.got_sources)[frame][shim.index] = body
        result = self.results[frame]
        if result.complete_at is None and len(self.held(frame)) == shim.sources:
            result.complete_at = now - self.frame_time(frame)
        if self.out is not None:
            self.out.put(frame, shim)

    def held(self, frame: int) -> dict[int, bytes]:
        """The frame's sources that arrived or that its parities rebuild."""
        if self.layout[frame] is None:
            return {}
        scheme, sources, parities = self.layout[frame]
        return recover(scheme, sources, parities, self.got_sources[frame], self.got_parities[frame])


class NackRequester:
    """The receiving end's second element: asks the sender, through `reverse` (a Link), for the
    sources that `fec` (the FecDecoder before it) neither holds nor can rebuild: at a gap in a
    frame's sources (unless `options.nack_after_fec`), once the frame should have arrived in full,
    and again after each retransmission timeout while an answer can still come in time."""

    def __init__(self, env: simpy.Environment, fec: FecDecoder, n_frames: int, expected_arrival: float, rtt: float,
                 rto: float, options: ProtectionOptions, reverse):
        self.env, self.fec, self.options, self.reverse = env, fec, options, reverse
        self.expected_arrival, self.rtt, self.rto = expected_arrival, rtt, rto
        self.asked: list[set[int]] = [set() for _ in range(n_frames)]
        for i in range(n_frames):
            env.process(self._watch(i))

    def put(self, frame: int, shim) -> None:
        """A packet of `frame` arrived (its shim): ask at once for the sources before it still missing."""
        if self.options.nack_after_fec or shim.parity:
            return
        got = self.fec.got_sources[frame]
        gaps = [i for i in range(shim.index) if i not in got and i not in self.asked[frame]]
        if gaps:
            self._nack(frame, gaps)

    def _missing(self, frame: int) -> list[int] | None:
        """Sources to ask for (None: the whole frame, nothing of it having arrived)."""
        fec = self.fec
        if fec.layout[frame] is None:
            return None
        scheme, sources, parities = fec.layout[frame]
        held = fec.held(frame)
        missing = [i for i in range(sources) if i not in held]
        if self.options.nack_after_fec and scheme == "rs" and missing:
            # parities still in flight or lost: ask for just enough sources to reach k
            need = sources - len(fec.got_sources[frame]) - len(fec.got_parities[frame])
            missing = missing[:max(0, need)] if need > 0 else []
        return missing

    def _nack(self, frame: int, indices: list[int] | None) -> None:
        body = struct.pack("<H", 0xFFFF) if indices is None else struct.pack(f"<H{len(indices)}B", len(indices), *indices)
        self.asked[frame].update(indices or [])
        self.fec.results[frame].nacks_sent += 1
        self.reverse.put(SimPacket(body, NACK_BYTES + len(body), frame, -1, self.env.now, 0))

    def _watch(self, frame: int):
        """At the frame's expected arrival, then every retransmission timeout while a copy can
        still come in time: ask for what is missing."""
        frame_time = self.fec.frame_time(frame)
        due = frame_time + self.fec.deadline
        t = frame_time + self.expected_arrival
        while t + self.rtt < due:  # a request now can be answered before the deadline
            if t > self.env.now:
                yield self.env.timeout(t - self.env.now)
            missing = self._missing(frame)
            if missing == []:
                return
            self._nack(frame, missing)
            t = self.env.now + self.rto


def simulate_protected(channel: ChannelConfig, frames: list[ProtectedFrame], fps: float, deadline: float,
                       loss_rate: float | None, seed: int, options: ProtectionOptions, base_dir=None,
                       trace: list | None = None) -> tuple[list[FrameResult], dict]:
    """Send the protected frames through the channel; -> (per frame results, run statistics).
    `trace` collects (frame, index, sent, expected arrival) of every retransmission."""
    env = simpy.Environment()
    results = [FrameResult({}, len(f.sources), None) for f in frames]
    forward = channel.delay.base
    source = ProtectedSource(env, frames, fps, deadline, forward, channel.bandwidth, results, options.max_retries,
                             trace=trace)
    port, link = forward_path(env, channel, loss_rate, seed, base_dir)
    reverse = None
    if options.nack:
        reverse_loss = Bernoulli(options.reverse_loss, element_seed(seed, "reverse-loss")) if options.reverse_loss else None
        reverse = Link(env, options.reverse_delay, channel.delay.jitter, channel.delay.distribution, False,
                       reverse_loss, seed=element_seed(seed, "reverse"), out=source)
    jitter_margin = 3 * channel.delay.jitter
    longest = max((sum(len(p) for p in f.sources + f.parities) for f in frames), default=0)
    expected = forward + jitter_margin + longest * 8 / channel.bandwidth + 0.002
    rto = forward + options.reverse_delay + 2 * jitter_margin + 0.002
    receiver = FecDecoder(env, len(frames), fps, deadline, results)
    if options.nack:
        receiver.out = NackRequester(env, receiver, len(frames), expected, forward + options.reverse_delay, rto,
                                     options, reverse)
    source.out, link.out = port, receiver
    cross_traffic(env, channel, len(frames) / fps, seed, port)
    env.run()
    for i, r in enumerate(results):
        r.recovered = receiver.held(i)
        r.arrived_sources = len(receiver.got_sources[i])
        if r.complete_at is None and len(r.recovered) == r.sources:
            r.complete_at = deadline  # rebuilt only by the deadline's final FEC pass
        r.shown_at = r.complete_at if r.complete_at is not None else (deadline if options.nack else min(deadline, expected))
    sent = sum(len(f.sources) + len(f.parities) for f in frames) + sum(r.retransmissions for r in results)
    stats = {"packets_sent": sent, "packets_lost_forward": len(link.lost),
             "dropped_queue": sum(1 for p in port.dropped if p.flow == 0), "late": receiver.late,
             "nacks_sent": sum(r.nacks_sent for r in results),
             "nacks_lost": len(reverse.lost) if reverse is not None else 0,
             "retransmissions": sum(r.retransmissions for r in results),
             "loss_rate_packets": len(link.lost) / sent if sent else 0.0,
             "expected_arrival_ms": expected * 1e3}
    return results, stats
