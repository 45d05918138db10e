"""Packets per second through source -> port -> link -> receiver, without the codec, against
ns.py on the same chain and rates, in the same run.

Both chains: a constant-interval source of 1000-byte packets at 16 Mbit/s, a 20 Mbit/s port with
a 200-packet tail-drop queue, a link with 30 ms delay and 10% Bernoulli loss, a receiver that
records each packet's latency. ns.py is an optional dependency (`pip install -e '.[bench]'`).

    python benchmarks/network_speed.py [--packets N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import simpy

from simnet.network.loss_models import Bernoulli
from simnet.network.elements import FrameSource, Link, Port, Receiver

SIZE, SOURCE_BPS, PORT_BPS, DELAY, LOSS = 1000, 16e6, 20e6, 0.030, 0.10


def run_simnet(n: int) -> tuple[float, int]:
    env = simpy.Environment()
    fps = SOURCE_BPS / (SIZE * 8)  # one packet per "frame": a constant-interval source
    frames = [[bytes(SIZE)] for _ in range(n)]
    source = FrameSource(env, frames, fps)
    port = Port(env, PORT_BPS, limit_packets=200)
    link = Link(env, DELAY, loss_model=Bernoulli(LOSS, seed=1), seed=2)
    receiver = Receiver(env, source.frame_time, deadline=10.0)
    source.out, port.out, link.out = port, link, receiver
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0, len(receiver.arrivals)


def run_nspy(n: int) -> tuple[float, int]:
    from ns.packet.dist_generator import DistPacketGenerator
    from ns.packet.sink import PacketSink
    from ns.port.port import Port as NsPort
    from ns.port.wire import Wire

    random.seed(1)
    env = simpy.Environment()
    gap = SIZE * 8 / SOURCE_BPS
    source = DistPacketGenerator(env, "src", lambda: gap, lambda: SIZE, finish=n * gap - gap / 2)
    port = NsPort(env, PORT_BPS, qlimit=200)
    wire = Wire(env, lambda: DELAY, loss_dist=lambda packet_id: LOSS)
    sink = PacketSink(env, rec_arrivals=False, rec_flow_ids=True)
    source.out, port.out, wire.out = port, wire, sink
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0, sum(sink.packets_received.values())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    result = {"packets": args.packets}
    best = {}
    for name, fn in (("simnet", run_simnet), ("ns.py", run_nspy)):
        try:
            times = []
            for _ in range(args.repeat):
                wall, delivered = fn(args.packets)
                times.append(wall)
            best[name] = min(times)
            result[name] = {"best_s": round(min(times), 3), "packets_per_s": round(args.packets / min(times)),
                            "delivered": delivered}
        except ImportError:
            result[name] = "not installed (pip install -e '.[bench]')"
    if len(best) == 2:
        result["speed_ratio_simnet_over_nspy"] = round(best["ns.py"] / best["simnet"], 2)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
