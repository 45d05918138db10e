"""End-to-end frames per second through a real mosquitto on loopback: encode -> packets ->
broker -> reassemble -> recover -> decode, at 256x256 and 768x512, with `neighbour` and with
`transformer` recovery (where its weights exist), at 20% packet loss. The sender offers frames
faster than real time; the figure is the receiver's decoded frames per second of wall time.

    python benchmarks/mqtt_fps.py [--frames 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from codec.zoo import load_codec
from recovery import RecoveryError, get_method
from simnet.mqtt.demo import demo_channel
from simnet.mqtt.receiver import LiveReceiver, receive_stream
from simnet.mqtt.sender import send_stream
from simnet.mqtt.transport import ConnectionOptions, Mosquitto
from simnet.experiment.frames import image_frames


async def one(codec, method, size, frames, port):
    options = ConnectionOptions("127.0.0.1", port)
    rx = LiveReceiver(codec, method, deadline=0.15, stream="bench", max_backlog=1000)
    source = image_frames(None, size, frames)
    receiving = asyncio.create_task(receive_stream(options, "bench", rx, lambda s: None, frames=frames,
                                                   idle_timeout=10))
    await asyncio.sleep(0.5)
    t0 = time.perf_counter()
    await send_stream(options, "bench", source, codec, 1024, fps=1000.0, channel=demo_channel(0.2))
    stats = await receiving
    wall = time.perf_counter() - t0
    return {"frames_shown": stats["frames_shown"], "wall_s": round(wall, 2),
            "fps": round(stats["frames_shown"] / wall, 2), "loss_rate": round(stats["loss_rate"], 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args(argv)
    codec = load_codec()
    methods = {"neighbour": get_method("neighbour")}
    try:
        methods["transformer"] = get_method("transformer")
    except RecoveryError as e:
        methods["transformer"] = None
        print(f"transformer skipped: {e}")
    result = {}
    with Mosquitto() as broker:
        for size in ((256, 256), (512, 768)):
            for name, method in methods.items():
                if method is None:
                    continue
                key = f"{size[0]}x{size[1]}_{name}"
                result[key] = asyncio.run(one(codec, method, size, args.frames, broker.port))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
