"""One pass of a stream's packets through a configured channel: the wiring of the network
elements (the forward path that every simulation uses), and the statistics of what arrived."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from ..seeds import element_seed
from .config import ChannelConfig
from .elements import FrameSource, Link, PoissonSource, Port, Receiver
from .loss_models import make_loss_model


@dataclass
class FrameOutcome:
    on_time: list[bytes]
    sent: int
    lost: int  # no on-time copy arrived, for any reason
    late: int
    latencies_ms: list[float]


@dataclass
class ChannelOutcome:
    frames: list[FrameOutcome]
    sent: int
    dropped_queue: int
    dropped_channel: int
    late: int
    lost: int
    duplicated: int
    corrupted: int
    burst_lengths: dict[int, int]  # run length of consecutive lost packets -> how many runs
    latency_quantiles_ms: list[float]  # 0..100th percentile of arrived packets' latency
    duration_s: float

    @property
    def loss_rate(self) -> float:
        return self.lost / self.sent if self.sent else 0.0

    def summary(self) -> dict:
        runs = sum(self.burst_lengths.values())
        return {"packets_sent": self.sent, "packets_lost": self.lost,
                "loss_rate_packets": self.loss_rate, "dropped_queue": self.dropped_queue,
                "dropped_channel": self.dropped_channel, "late": self.late,
                "late_share": self.late / self.lost if self.lost else 0.0,
                "duplicated": self.duplicated, "corrupted": self.corrupted,
                "mean_burst_length": (sum(k * v for k, v in self.burst_lengths.items()) / runs
                                      if runs else 0.0),
                "burst_lengths": {str(k): v for k, v in sorted(self.burst_lengths.items())},
                "latency_quantiles_ms": self.latency_quantiles_ms}


def burst_histogram(lost_flags: np.ndarray) -> dict[int, int]:
    hist: dict[int, int] = {}
    run = 0
    for lost in lost_flags:
        if lost:
            run += 1
        elif run:
            hist[run] = hist.get(run, 0) + 1
            run = 0
    if run:
        hist[run] = hist.get(run, 0) + 1
    return hist


def forward_path(env: simpy.Environment, channel: ChannelConfig, loss_rate: float | None, seed: int,
                 base_dir=None, delay: float | None = None) -> tuple[Port, Link]:
    """The channel's forward path: its port (bandwidth, queue) into its link (delay, jitter, loss,
    duplication, bit errors), the loss at `loss_rate` where given (a sweep's point). Senders put
    into the port; the caller sets the link's `out`. The one wiring every simulation uses."""
    loss = make_loss_model(channel.loss, loss_rate, element_seed(seed, "loss"), base_dir)
    port = Port(env, channel.bandwidth, channel.queue.packets, channel.queue.bytes)
    link = Link(env, channel.delay.base if delay is None else delay, channel.delay.jitter,
                channel.delay.distribution, channel.delay.reorder, loss, channel.duplicate,
                channel.bit_error_rate, element_seed(seed, "link"))
    port.out = link
    return port, link


def cross_traffic(env: simpy.Environment, channel: ChannelConfig, duration: float, seed: int, port: Port) -> None:
    """The channel's cross traffic, if any, into `port` for `duration` seconds."""
    if channel.cross_traffic is not None:
        PoissonSource(env, channel.cross_traffic.rate, int(channel.cross_traffic.packet),
                      duration, element_seed(seed, "cross"), port)


def simulate_channel(channel: ChannelConfig, frames: list[list[bytes]], fps: float,
                     deadline: float, loss_rate: float | None, seed: int, base_dir=None
                     ) -> ChannelOutcome:
    """Send each frame's packets (frame i at i / fps) through the channel; `loss_rate` replaces
    the configured one (a sweep's point), `base_dir` is where a loss trace's path starts."""
    env = simpy.Environment()
    source = FrameSource(env, frames, fps)
    port, link = forward_path(env, channel, loss_rate, seed, base_dir)
    receiver = Receiver(env, source.frame_time, deadline)
    source.out, link.out = port, receiver
    cross_traffic(env, channel, len(frames) / fps, seed, port)
    env.run()

    sent = source.sent
    arrived_on_time = np.zeros(sent, dtype=bool)
    late = np.zeros(sent, dtype=bool)
    per_frame_latency: list[list[float]] = [[] for _ in frames]
    for a in receiver.arrivals:
        per_frame_latency[a.frame].append(a.latency * 1e3)
        if a.late:
            late[a.seq] = True
        elif not a.corrupted:
            arrived_on_time[a.seq] = True
    late &= ~arrived_on_time  # a duplicate on time makes up for a late copy
    lost = ~arrived_on_time
    starts = np.cumsum([0] + [len(f) for f in frames])
    outcomes = []
    for i, packets in enumerate(frames):
        sl = slice(starts[i], starts[i + 1])
        outcomes.append(FrameOutcome(receiver.on_time.get(i, []), len(packets), int(lost[sl].sum()),
                                     int(late[sl].sum()), per_frame_latency[i]))
    latencies = np.array([a.latency * 1e3 for a in receiver.arrivals])
    quantiles = (np.percentile(latencies, np.arange(101)).tolist() if latencies.size else [])
    video_drops_queue = sum(1 for p in port.dropped if p.flow == 0)
    return ChannelOutcome(outcomes, sent, video_drops_queue, len(link.lost), int(late.sum()),
                          int(lost.sum()), link.duplicated, link.corrupted, burst_histogram(lost),
                          quantiles, env.now)
