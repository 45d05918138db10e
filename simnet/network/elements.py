"""Network elements in the style of ns.py and SimPy: small classes with `put(packet)` and an `out`
attribute, wired together by `channel.simulate_channel`; processes are generator functions.

    FrameSource -> Port (bandwidth, tail-drop queue) -> Link (delay, jitter, loss, duplication,
    bit errors) -> Receiver (playout deadline)

Every random element owns its own seeded numpy Generator, so one element's draws never shift
another's: the same scenario and seed give the same results, bit for bit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import simpy


@dataclass(slots=True)
class SimPacket:
    data: bytes
    size: int  # bytes on the wire
    frame: int
    index: int  # packet index within its frame; -1 for cross traffic
    sent: float  # time the source emitted it, seconds
    flow: int = 0  # 0 = the video stream, 1 = cross traffic
    seq: int = 0  # send order of the video stream's packets
    corrupted: bool = False


def sample_delay(rng: np.random.Generator, delay: float, jitter: float, distribution: str) -> float:
    """One packet's one-way delay: `delay` plus jitter drawn from `distribution`, never negative.
    `jitter` is the standard deviation (normal), the half-width (uniform) or the mean (exponential,
    pareto with shape 3: heavy-tailed delay spikes)."""
    if jitter <= 0:
        return delay
    if distribution == "normal":
        extra = rng.normal(0.0, jitter)
    elif distribution == "uniform":
        extra = rng.uniform(-jitter, jitter)
    elif distribution == "exponential":
        extra = rng.exponential(jitter)
    else:
        extra = (rng.pareto(3.0) + 1) * jitter * 2 / 3
    return max(0.0, delay + extra)


class FrameSource:
    """Emits each frame's packets back to back at the frame's time (frame i at i / fps)."""

    def __init__(self, env: simpy.Environment, frames: list[list[bytes]], fps: float, out=None):
        self.env, self.frames, self.fps, self.out = env, frames, fps, out
        self.sent = 0
        self.action = env.process(self.run())

    def frame_time(self, frame: int) -> float:
        return frame / self.fps

    def run(self):
        for i, packets in enumerate(self.frames):
            delay = self.frame_time(i) - self.env.now
            if delay > 0:
                yield self.env.timeout(delay)
            for j, data in enumerate(packets):
                self.out.put(SimPacket(data, len(data), i, j, self.env.now, 0, self.sent))
                self.sent += 1


class PoissonSource:
    """Cross traffic: fixed-size packets with exponential gaps at a mean bit rate."""

    def __init__(self, env: simpy.Environment, rate_bps: float, size: int, until: float, seed: int,
                 out=None):
        self.env, self.rate, self.size, self.until, self.out = env, rate_bps, size, until, out
        self.rng = np.random.default_rng(seed)
        self.action = env.process(self.run())

    def run(self):
        mean_gap = self.size * 8 / self.rate
        while True:
            yield self.env.timeout(self.rng.exponential(mean_gap))
            if self.env.now > self.until:
                return
            self.out.put(SimPacket(b"", self.size, -1, -1, self.env.now, flow=1))


class Port:
    """An output port: serialises packets at `rate_bps` from a FIFO queue with tail drop once
    the queue holds `limit_packets` packets or `limit_bytes` bytes (the one in service excluded)."""

    def __init__(self, env: simpy.Environment, rate_bps: float, limit_packets: int | None = None,
                 limit_bytes: float | None = None, out=None):
        self.env, self.rate, self.out = env, rate_bps, out
        self.limit_packets, self.limit_bytes = limit_packets, limit_bytes
        self.queue: deque[SimPacket] = deque()
        self.queued_bytes = 0
        self.busy = False
        self.dropped: list[SimPacket] = []
        self._wake = env.event()
        self.action = env.process(self.run())

    def put(self, packet: SimPacket) -> None:
        if (self.limit_packets is not None and len(self.queue) >= self.limit_packets) or (
                self.limit_bytes is not None and self.queued_bytes + packet.size > self.limit_bytes):
            self.dropped.append(packet)
            return
        self.queue.append(packet)
        self.queued_bytes += packet.size
        if not self.busy and not self._wake.triggered:
            self._wake.succeed()

    def run(self):
        while True:
            while not self.queue:
                self.busy = False
                self._wake = self.env.event()
                yield self._wake
            self.busy = True
            packet = self.queue.popleft()
            self.queued_bytes -= packet.size
            yield self.env.timeout(packet.size * 8 / self.rate)
            self.out.put(packet)


class Link:
    """Propagation delay with jitter, random loss from a loss model, duplication and bit errors.

    Without `reorder`, packets leave in the order they entered (a packet's jitter cannot move it
    ahead of an earlier one); with it, each packet's delay is independent."""

    def __init__(self, env: simpy.Environment, delay: float, jitter: float = 0.0,
                 distribution: str = "normal", reorder: bool = False, loss_model=None,
                 duplicate: float = 0.0, bit_error_rate: float = 0.0, seed: int = 0, out=None):
        self.env, self.delay, self.jitter, self.out = env, delay, jitter, out
        self.distribution, self.reorder = distribution, reorder
        self.loss_model, self.duplicate, self.bit_error_rate = loss_model, duplicate, bit_error_rate
        seeds = np.random.SeedSequence(seed).spawn(3)
        self.jitter_rng, self.dup_rng, self.ber_rng = (np.random.default_rng(s) for s in seeds)
        self.last_delivery = 0.0
        self.lost: list[SimPacket] = []
        self.duplicated = 0
        self.corrupted = 0

    def sample_delay(self) -> float:
        return sample_delay(self.jitter_rng, self.delay, self.jitter, self.distribution)

    def put(self, packet: SimPacket) -> None:
        if packet.flow == 0 and self.loss_model is not None and self.loss_model.drop(self.env.now):
            self.lost.append(packet)
            return
        copies = 2 if self.duplicate > 0 and self.dup_rng.random() < self.duplicate else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            self._send(packet)

    def _send(self, packet: SimPacket) -> None:
        if self.bit_error_rate > 0 and packet.flow == 0:
            p_hit = -np.expm1(packet.size * 8 * np.log1p(-self.bit_error_rate))
            if self.ber_rng.random() < p_hit:
                data = bytearray(packet.data)
                bit = int(self.ber_rng.integers(len(data) * 8))
                data[bit // 8] ^= 1 << (bit % 8)
                packet = SimPacket(bytes(data), packet.size, packet.frame, packet.index,
                                   packet.sent, packet.flow, packet.seq, True)
                self.corrupted += 1
        now = self.env.now
        delay = self.sample_delay()
        if not self.reorder:
            # SimPy fires at now + delay in floating point: keep that sum, not the intended
            # time, monotonic, so equal-time deliveries keep their order
            delay = max(delay, self.last_delivery - now)
            while now + delay < self.last_delivery:
                delay = float(np.nextafter(delay, np.inf))
            self.last_delivery = now + delay
        event = self.env.timeout(delay)
        event.callbacks.append(lambda _event, p=packet: self.out.put(p))


@dataclass
class Arrival:
    seq: int
    frame: int
    index: int
    latency: float
    late: bool
    corrupted: bool


class Receiver:
    """Records every video packet's arrival; a packet after its frame's playout deadline
    (frame time + deadline) is late and is not handed to the decoder."""

    def __init__(self, env: simpy.Environment, frame_time, deadline: float):
        self.env, self.frame_time, self.deadline = env, frame_time, deadline
        self.arrivals: list[Arrival] = []
        self.on_time: dict[int, list[bytes]] = {}
        self.cross_traffic = 0

    def put(self, packet: SimPacket) -> None:
        if packet.flow != 0:
            self.cross_traffic += 1
            return
        now = self.env.now
        late = now > self.frame_time(packet.frame) + self.deadline
        self.arrivals.append(Arrival(packet.seq, packet.frame, packet.index, now - packet.sent, late,
                                     packet.corrupted))
        if not late:
            self.on_time.setdefault(packet.frame, []).append(packet.data)
