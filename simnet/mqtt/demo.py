"""`simnet mqtt demo`: embedded broker, sender, receiver and live view on one machine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ..experiment.frames import image_frames
from ..experiment.scenario import load_scenario
from ..experiment.setup import recovery_for
from ..network.config import ChannelConfig
from .receiver import LiveReceiver, receive_stream, serve_live_view
from .sender import LiveChannel, send_stream
from .transport import ConnectionOptions, EmbeddedBroker

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def demo_channel(loss: float, seed: int = 0) -> LiveChannel:
    """lossy20's channel (Gilbert-Elliott bursts of 3, 30 ms +- 5 ms) at the asked loss rate."""
    path = SCENARIOS / "lossy20.yaml"
    channel = load_scenario(path).channel if path.exists() else ChannelConfig.model_validate(
        {"loss": {"model": "gilbert_elliott", "rate": 0.2, "burst": 3},
         "delay": {"base": "30 ms", "jitter": "5 ms"}})
    return LiveChannel(channel, seed, loss)


async def run_demo(codec, frames: int, fps: float, loss: float, recovery: str, view_port: int,
                   size: tuple[int, int], log=print, level: int = 1024) -> dict:
    # missing weights fail here, before a broker is running
    method = recovery_for(recovery, codec)
    broker = await EmbeddedBroker().start()
    options = ConnectionOptions(broker.host, broker.port)
    receiver = LiveReceiver(codec, method, deadline=0.15, stream="demo")
    server = serve_live_view(receiver.state, "127.0.0.1", view_port) if view_port else None
    if server:
        log(f"live view: http://127.0.0.1:{view_port}/")
    source = image_frames(None, size, frames)
    try:
        receiving = asyncio.create_task(receive_stream(options, "demo", receiver, log, frames=frames,
                                                       idle_timeout=5.0))
        await asyncio.sleep(0.5)  # the receiver subscribes first
        sent = await send_stream(options, "demo", source, codec, level, fps, demo_channel(loss), log=log)
        stats = await receiving
        stats["sender_packets"] = sent.packets
        stats["sender_dropped_by_channel"] = sent.dropped
        stats["configured_loss"] = loss
        return stats
    finally:
        if server:
            server.shutdown()
        await broker.stop()
