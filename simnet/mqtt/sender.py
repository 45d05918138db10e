"""The MQTT sender and relay: frames -> codec packets -> publish, with simnet's channel models
applied in the application (this kernel has no netem)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import aiomqtt
import numpy as np

from ..network.config import ChannelConfig
from ..network.elements import sample_delay
from ..network.loss_models import make_loss_model
from ..seeds import element_seed
from ..stream import CoarseLayer, StreamSender
from ..stream.vq import VQStreamCodec
from .transport import (ConnectionOptions, MqttError, feedback_topic, model_tag, packets_topic, unwrap,
                        with_reconnect, wrap)


class LiveChannel:
    """A scenario's loss and delay models for real packets: `decide()` says whether a packet is
    dropped and, if not, how long to hold it."""

    def __init__(self, channel: ChannelConfig, seed: int, loss_rate: float | None = None, base_dir=None):
        self.loss = make_loss_model(channel.loss, loss_rate, element_seed(seed, "loss"), base_dir)
        self.rng = np.random.default_rng(element_seed(seed, "link"))
        self.delay, self.jitter = channel.delay.base, channel.delay.jitter
        self.distribution = channel.delay.distribution
        self.sent = self.dropped = 0
        self._t0 = time.monotonic()

    def decide(self) -> float | None:
        self.sent += 1
        if self.loss is not None and self.loss.drop(time.monotonic() - self._t0):
            self.dropped += 1
            return None
        return sample_delay(self.rng, self.delay, self.jitter, self.distribution)


@dataclass
class SenderStats:
    frames: int = 0
    packets: int = 0
    dropped: int = 0
    bytes: int = 0
    feedback: list = field(default_factory=list)


async def send_stream(options: ConnectionOptions, stream: str, frames, codec, level: int, fps: float,
                      channel: LiveChannel | None = None, mtu: int = 1200, max_tokens: int | None = 48,
                      interleave_seed: int = 1, log=print, stop: asyncio.Event | None = None,
                      chroma: int = 0, chroma_step: int = 2, luma: bool = False,
                      colour_copies: int = 2, coarse: int = 0) -> SenderStats:
    """Publish every frame's packets at `fps`; collect receiver reports from the feedback topic.
    `chroma` > 0: each frame's colour side channel (codec/colour.py) rides in `colour_copies`
    of its packets. `coarse` > 0: each frame's coarse layer (its tokens' cells at that level)
    follows its packets."""
    stats = SenderStats()
    sender = StreamSender(VQStreamCodec(codec, level=level, mtu=mtu, max_tokens=max_tokens, seed=interleave_seed,
                                        chroma=chroma, chroma_step=chroma_step, luma=luma,
                                        colour_copies=colour_copies),
                          [CoarseLayer(coarse)] if coarse else [])
    pending: set[asyncio.Task] = set()
    source = enumerate(frames)  # an iterator: a reconnect goes on from where it stopped
    current: list = [None]  # (index, frame) being sent
    start = time.monotonic()  # frame i is due at start + i / fps, across reconnects
    tag = model_tag(codec.checksum)

    async def session(client):
        await client.subscribe(feedback_topic(stream), qos=options.qos)
        broken = asyncio.Event()  # a delayed publish found the connection dead

        async def listen():
            async for message in client.messages:
                try:
                    stats.feedback.append(json.loads(bytes(message.payload)))
                except (ValueError, UnicodeDecodeError):
                    pass

        listener = asyncio.create_task(listen())
        try:
            while True:
                # the frame a lost connection interrupted goes again; the source is read once
                current[0] = current[0] or next(source, None)
                if current[0] is None:
                    break
                i, (name, rgb) = current[0]
                if stop is not None and stop.is_set():
                    break
                wait = start + i / fps - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if broken.is_set() or listener.done():
                    raise aiomqtt.MqttError("connection to the broker lost")
                _, wire = await asyncio.to_thread(sender.send, i, rgb)  # keep the loop responsive
                captured = time.time()
                for packet in wire.packets:
                    payload = wrap(packet, captured, tag)
                    hold = channel.decide() if channel is not None else 0.0
                    stats.packets += 1
                    stats.bytes += len(payload)
                    if hold is None:
                        stats.dropped += 1
                        continue
                    if hold <= 0:
                        await client.publish(packets_topic(stream), payload, qos=options.qos)
                    else:
                        task = asyncio.create_task(_publish_later(client, packets_topic(stream), payload,
                                                                  options.qos, hold, broken))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                stats.frames += 1
                current[0] = None
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            await asyncio.sleep(0.5)  # let the last receiver reports arrive
        finally:
            listener.cancel()
        return stats

    result = await with_reconnect(options, session, log, stop)
    return result or stats


async def _publish_later(client, topic, payload, qos, delay, broken: asyncio.Event | None = None):
    """Publish after the channel's delay; a packet whose connection died meanwhile is lost, and
    `broken` tells the sender to reconnect."""
    await asyncio.sleep(delay)
    try:
        await client.publish(topic, payload, qos=qos)
    except aiomqtt.MqttError:
        if broken is not None:
            broken.set()


async def relay(options: ConnectionOptions, stream_in: str, stream_out: str, channel: LiveChannel,
                log=print, stop: asyncio.Event | None = None, max_pending: int = 10_000) -> dict:
    """Subscribe to one stream's packets, pass each through the channel model, republish on
    another stream's topic. Bounded: beyond `max_pending` held packets, new ones are dropped."""
    counts = {"in": 0, "out": 0, "dropped": 0, "overflow": 0, "garbage": 0}
    pending: set[asyncio.Task] = set()

    async def session(client):
        await client.subscribe(packets_topic(stream_in), qos=options.qos)
        broken = asyncio.Event()
        async for message in client.messages:
            if stop is not None and stop.is_set():
                break
            if broken.is_set():
                raise aiomqtt.MqttError("connection to the broker lost")
            payload = bytes(message.payload)
            counts["in"] += 1
            try:
                unwrap(payload)
            except MqttError:
                counts["garbage"] += 1
                continue
            hold = channel.decide()
            if hold is None:
                counts["dropped"] += 1
                continue
            if len(pending) >= max_pending:
                counts["overflow"] += 1
                continue
            task = asyncio.create_task(_publish_later(client, packets_topic(stream_out), payload,
                                                      options.qos, hold, broken))
            pending.add(task)
            task.add_done_callback(pending.discard)
            counts["out"] += 1
        return counts

    return await with_reconnect(options, session, log, stop) or counts
