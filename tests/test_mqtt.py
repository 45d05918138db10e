"""MQTT transport: envelope and receiver logic, then real brokers: mosquitto on loopback (loss,
broker restart), two hosts in network namespaces, and the live view in headless Chromium."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from recovery import get_method
from simnet.mqtt.receiver import LiveReceiver, receive_stream, serve_live_view
from simnet.mqtt.sender import LiveChannel, send_stream
from simnet.mqtt.transport import (ConnectionOptions, MAX_PAYLOAD, MqttError, Mosquitto, free_port,
                                   model_tag, mosquitto_binary, parse_broker, unwrap, wrap)
from simnet.network.config import ChannelConfig

ROOT = Path(__file__).resolve().parent.parent
needs_mosquitto = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed")


def TAG(codec):  # the envelope's model tag of these weights
    return model_tag(codec.checksum)


def frames_of(sample_rgb, n):
    return [(f"f{i}", np.roll(sample_rgb, 7 * i, axis=1)) for i in range(n)]


def test_envelope_round_trip_and_rejects():
    t, data, model = unwrap(wrap(b"packet", 12.5, b"\x01\x02\x03\x04"))
    assert t == 12.5 and data == b"packet" and model == b"\x01\x02\x03\x04"
    for bad in (b"", b"XX" + bytes(20), bytes(MAX_PAYLOAD + 1), wrap(b"p", float("nan"))):
        with pytest.raises(MqttError):
            unwrap(bad)


def test_parse_broker():
    assert parse_broker("host") == ("host", 1883)
    assert parse_broker("10.1.2.3:1884") == ("10.1.2.3", 1884)
    assert parse_broker("[::1]:1885") == ("::1", 1885)
    for bad in ("", "h:port", "h:70000"):
        with pytest.raises(MqttError):
            parse_broker(bad)


def test_receiver_counts_garbage_late_and_decodes(tiny_codec, sample_rgb):
    rx = LiveReceiver(tiny_codec, get_method("neighbour"), deadline=0.1)
    grid = tiny_codec.encode(sample_rgb, 64)
    packets = tiny_codec.packetize(grid, frame=0, max_tokens=5)
    assert len(packets) == 7
    for p in packets[1:]:
        assert rx.on_payload(wrap(p.to_bytes(), time.time(), TAG(tiny_codec)), now=100.0) == "ok"
    assert rx.on_payload(b"garbage", 100.0) == "garbage"
    assert rx.on_payload(bytes(MAX_PAYLOAD + 10), 100.0) == "garbage"
    assert rx.due_frames(100.05) == []
    assert rx.due_frames(100.2) == [0]
    stats = rx.decode_frame(0)
    assert stats["frames_shown"] == 1 and stats["packets_lost"] == 1 and stats["garbage"] == 1
    assert stats["oversized"] == 1 and 0 < stats["token_loss_last"] < 0.2
    assert rx.on_payload(wrap(packets[0].to_bytes(), time.time(), TAG(tiny_codec)), 100.3) == "late"
    assert rx.stats["packets_late"] == 1
    assert rx.state.png("frame").startswith(b"\x89PNG")
    from io import BytesIO

    from PIL import Image

    mask = np.asarray(Image.open(BytesIO(rx.state.png("mask"))))
    frame = np.asarray(Image.open(BytesIO(rx.state.png("frame"))))
    lost = ~np.kron(rx.state._missing, np.ones((16, 16), bool))[:frame.shape[0], :frame.shape[1]]
    assert np.array_equal(mask[lost], frame[lost])  # only lost tokens are tinted
    assert (mask[~lost][:, 0].astype(int) >= frame[~lost][:, 0]).all()


def _run_loopback(codec, frames, port, loss, restart=None, fps=20.0, count=None):
    """`count`: how many frames an iterator `frames` holds."""
    async def main():
        # a short keepalive: a connection the broker's restart left half-dead (seen once: a broken
        # pipe whose socket asyncio had already dropped) is noticed by its missing PINGRESP in
        # about 2 s, well inside the receiver's idle timeout
        options = ConnectionOptions("127.0.0.1", port, max_backoff=0.5, keepalive=1)
        # a deep backlog: every frame is decoded however slow this machine is right now
        rx = LiveReceiver(codec, get_method("neighbour"), deadline=0.3, stream="t", max_backlog=1000)
        channel = LiveChannel(ChannelConfig.model_validate(
            {"loss": {"model": "bernoulli", "rate": loss}, "delay": {"base": "5 ms", "jitter": "1 ms"}}),
            seed=3)
        receiving = asyncio.create_task(receive_stream(options, "t", rx, log=lambda s: None,
                                                       frames=count or len(frames), idle_timeout=8.0))
        await asyncio.sleep(0.5)
        if restart:
            asyncio.get_running_loop().call_later(*restart)
        sent = await send_stream(options, "t", frames, codec, 64, fps, channel, max_tokens=3,
                                 log=lambda s: None)
        return sent, await receiving
    return asyncio.run(main())


@needs_mosquitto
def test_loopback_mosquitto_loss_matches_configuration(tiny_codec, sample_rgb):
    with Mosquitto() as broker:
        sent, stats = _run_loopback(tiny_codec, frames_of(sample_rgb, 30), broker.port, loss=0.2)
    assert sent.frames == 30 and stats["frames_shown"] >= 28
    measured = stats["packets_lost"] / stats["packets_expected"]
    configured = sent.dropped / sent.packets
    assert abs(configured - 0.2) < 0.06  # the channel model's own draw over ~360 packets
    assert abs(measured - configured) < 0.03  # what the receiver sees is what the channel did
    assert stats["garbage"] == 0


@needs_mosquitto
def test_broker_restart_mid_stream(tiny_codec, sample_rgb):
    broker = Mosquitto().start()
    try:
        def bounce():
            broker.stop()
            time.sleep(0.7)
            broker.start()

        import threading

        # a source is an iterator, read once: the reconnect goes on where the stream stopped
        source = (frame for frame in frames_of(sample_rgb, 40))
        sent, stats = _run_loopback(tiny_codec, source, broker.port, loss=0.0,
                                    restart=(0.8, lambda: threading.Thread(target=bounce).start()), fps=15, count=40)
    finally:
        broker.stop()
    assert sent.frames == 40
    # frames after the restart arrived and decoded
    assert stats["last_frame"] >= 35 and stats["frames_shown"] >= 30


def test_live_view_serves_page_state_and_frames(tiny_codec, sample_rgb):
    rx = LiveReceiver(tiny_codec, get_method("none"), deadline=0.0)
    for p in tiny_codec.packetize(tiny_codec.encode(sample_rgb, 64), frame=0):
        rx.on_payload(wrap(p.to_bytes(), time.time(), TAG(tiny_codec)), 0.0)
    rx.decode_frame(0)
    port = free_port()
    server = serve_live_view(rx.state, "127.0.0.1", port)
    try:
        base = f"http://127.0.0.1:{port}/"
        assert b"simnet live view" in urllib.request.urlopen(base, timeout=5).read()
        assert json.loads(urllib.request.urlopen(base + "state.json", timeout=5).read())["frames_shown"] == 1
        assert urllib.request.urlopen(base + "frame.png", timeout=5).read().startswith(b"\x89PNG")
    finally:
        server.shutdown()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian package chromium)")
def test_live_view_in_headless_chromium(tiny_codec, sample_rgb, tmp_path):
    from PIL import Image

    rx = LiveReceiver(tiny_codec, get_method("neighbour"), deadline=0.0, stream="browser")
    packets = tiny_codec.packetize(tiny_codec.encode(sample_rgb, 64), frame=0, max_tokens=4)
    for p in packets[::2]:
        rx.on_payload(wrap(p.to_bytes(), time.time(), TAG(tiny_codec)), 0.0)
    rx.decode_frame(0)
    port = free_port()
    server = serve_live_view(rx.state, "127.0.0.1", port)
    try:
        shot = tmp_path / "view.png"
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
                        "--window-size=900,600", f"--screenshot={shot}", f"http://127.0.0.1:{port}/"],
                       check=True, capture_output=True, timeout=60)
        img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        red = (img[..., 0] > 150) & (img[..., 1] < 100) & (img[..., 2] < 100)
        assert red.sum() > 50  # the lost-token mask is drawn
        assert img.std() > 20  # not a blank page: the frame and the statistics are there
        if os.environ.get("SIMNET_KEEP_SCREENSHOT"):
            shutil.copy(shot, os.environ["SIMNET_KEEP_SCREENSHOT"])
    finally:
        server.shutdown()


def _netns_available() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "needs root and iproute2"
    probe = subprocess.run(["ip", "netns", "add", "simnet-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create network namespaces ({probe.stderr.strip()[:80]})"
    subprocess.run(["ip", "netns", "del", "simnet-probe"], capture_output=True)
    return None


@needs_mosquitto
def test_two_hosts_in_network_namespaces(tiny_weights, tmp_path):
    reason = _netns_available()
    if reason:
        pytest.skip(reason)
    a, b = f"simnet-a-{os.getpid()}", f"simnet-b-{os.getpid()}"
    va, vb = f"sna{os.getpid() % 10000}", f"snb{os.getpid() % 10000}"
    ip_a, ip_b = "192.0.2.1", "192.0.2.2"  # TEST-NET-1, only inside these namespaces

    def sh(*cmd):
        subprocess.run(cmd, check=True, capture_output=True)

    created = []
    try:
        for ns in (a, b):
            sh("ip", "netns", "add", ns)
            created.append(ns)
        sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        sh("ip", "link", "set", va, "netns", a)
        sh("ip", "link", "set", vb, "netns", b)
        for ns, dev, ip in ((a, va, ip_a), (b, vb, ip_b)):
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        with Mosquitto(ip_a, 1883, prefix=["ip", "netns", "exec", a]):
            scenario = tmp_path / "lossy.yaml"
            scenario.write_text("name: lossy\nchannel:\n  loss: {model: bernoulli, rate: 0.2}\n")
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            cli = [sys.executable, "-m", "simnet.cli", "mqtt"]
            receiver = subprocess.Popen(["ip", "netns", "exec", a, *cli, "receive", "--broker", ip_a,
                                         "--stream", "two", "--view-port", "0", "--frames", "30",
                                         "--idle-timeout", "15", "--deadline", "300",
                                         "--weights", str(tiny_weights)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            time.sleep(4)
            sender = subprocess.run(["ip", "netns", "exec", b, *cli, "send", "--broker", ip_a,
                                     "--stream", "two", "--frames", "30", "--fps", "10", "--size", "48x64",
                                     "--codebook", "64", "--max-tokens", "3", "--channel", str(scenario),
                                     "--weights", str(tiny_weights)],
                                    capture_output=True, text=True, env=env, timeout=180)
            assert sender.returncode == 0, sender.stderr[-500:]
            out, err = receiver.communicate(timeout=120)
            assert receiver.returncode == 0, err[-500:]
        stats = json.loads(out[out.index("{"):])
        assert stats["frames_shown"] + stats["frames_skipped"] >= 28 and stats["frames_shown"] >= 10
        assert abs(stats["packets_lost"] / stats["packets_expected"] - 0.2) < 0.07
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@needs_mosquitto
def test_junk_on_the_wire_is_counted_dropped_and_bounded(tiny_codec, sample_rgb):
    """While a stream runs, a stranger floods the packets topic with random bytes, truncated
    envelopes, packets of other weights and other streams, forged frame numbers, duplicates and
    very late packets. The receiver counts and drops them, keeps decoding, and its frame slots and
    memory stay bounded."""
    import aiomqtt

    from simnet.mqtt.transport import packets_topic

    rng = np.random.default_rng(5)
    frames = frames_of(sample_rgb, 40)
    grid = tiny_codec.encode(frames[0][1], 64)
    real = [p.to_bytes() for p in tiny_codec.packetize(grid, frame=0, max_tokens=3)]
    tag = TAG(tiny_codec)

    def junk(i: int) -> bytes:
        kind = i % 7
        if kind == 0:
            return rng.bytes(int(rng.integers(0, 300)))
        if kind == 1:
            return wrap(real[i % len(real)], time.time(), tag)[:int(rng.integers(1, 20))]
        if kind == 2:
            return wrap(real[i % len(real)], time.time(), b"\xde\xad\xbe\xef")  # other weights
        packet = tiny_codec.packetize(grid, stream=7 if kind == 3 else 0,
                                      frame=[0, 0, 10**6 + i, 0, 0][kind - 3], max_tokens=3)[0]
        if kind == 6:
            return wrap(real[0], time.time(), tag)  # a duplicate of frame 0, long closed: late
        return wrap(packet.to_bytes(), time.time(), tag)

    pool = [junk(i) for i in range(700)]
    high_water = {"slots": 0, "rss": 0}

    def rss() -> int:
        return int(open("/proc/self/statm").read().split()[1]) * 4096

    async def main(port):
        options = ConnectionOptions("127.0.0.1", port, max_backoff=0.5, keepalive=2)
        rx = LiveReceiver(tiny_codec, get_method("neighbour"), deadline=0.3, stream="t", max_backlog=1000)
        receiving = asyncio.create_task(receive_stream(options, "t", rx, log=lambda s: None,
                                                       frames=len(frames), idle_timeout=8.0))
        await asyncio.sleep(0.5)

        async def flood():
            async with aiomqtt.Client("127.0.0.1", port) as client:
                for i in range(10_000):
                    await client.publish(packets_topic("t"), pool[i % len(pool)], qos=0)
                    high_water["slots"] = max(high_water["slots"], len(rx.slots))
                    if i % 200 == 0:
                        high_water["rss"] = max(high_water["rss"], rss())
                        await asyncio.sleep(0.01)

        before = rss()
        flooding = asyncio.create_task(flood())
        sent = await send_stream(options, "t", frames, tiny_codec, 64, 20.0, max_tokens=3, log=lambda s: None)
        await flooding
        stats = await receiving
        return sent, stats, rx, high_water["rss"] - before

    with Mosquitto() as broker:
        sent, stats, rx, growth = asyncio.run(main(broker.port))
    assert sent.frames == 40 and stats["frames_shown"] >= 36
    for key in ("garbage", "wrong_model", "other_stream", "out_of_window", "packets_late"):
        assert stats[key] > 50, (key, stats)
    assert stats["packets_lost"] / stats["packets_expected"] < 0.05  # junk did not spoil the statistics
    assert high_water["slots"] <= 2 * LiveReceiver.WINDOW + 1 and len(rx.closed) <= 10_000
    assert growth < 64 * 2**20  # resident memory during the flood, over what it was before, bytes


@needs_mosquitto
@pytest.mark.slow
def test_soak_for_a_minute_through_broker_kills():
    """benchmarks/mqtt_soak.py's short version: send and receive as processes, mosquitto killed
    (SIGKILL) and restarted every 20 s, 20% bursty loss."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mqtt_soak", Path(__file__).parent.parent / "benchmarks" / "mqtt_soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    result = soak.soak(minutes=1, restart_every=20, fps=5, size="64x96", loss=0.2, stream="soaktest",
                       log=lambda s: None)
    assert result["receiver_exit"] == 0 and result["frames_sent"] == 300
    assert len(result["restarts"]) == 2
    assert all(r["resumed_after_s"] is not None and r["resumed_after_s"] < 5 for r in result["restarts"]), result
    assert result["frames_shown"] + result["frames_skipped"] + result["frames_lost"] >= 0.9 * 300
    assert result["frames_shown"] >= 0.6 * 300
    assert result["rss_growth_after_warmup_mb"] < 64


def test_the_receiver_applies_the_colour_side_channel_that_arrives(tiny_codec, sample_rgb):
    """Packets carrying a colour section (mqtt send --chroma) decode with it at the receiver; a
    frame whose copies were all lost decodes without it."""
    from codec import colour
    from simnet.mqtt.transport import model_tag, wrap

    rx = LiveReceiver(tiny_codec, get_method("neighbour"), deadline=0.3, stream="t")
    grid = tiny_codec.encode(sample_rgb, 64)
    plane = colour.measure(sample_rgb, 16, 2)
    section = colour.to_bytes(plane)
    tag = model_tag(tiny_codec.checksum)
    for frame, keep in ((0, lambda p: True), (1, lambda p: not p.colour)):
        packets = tiny_codec.packetize(grid, frame=frame, max_tokens=6, seed=frame, colour=section, colour_copies=2)
        assert sum(1 for p in packets if p.colour) == 2
        for p in packets:
            if keep(p):
                assert rx.on_payload(wrap(p.to_bytes(), time.time(), tag), time.monotonic()) == "ok"
        rx.decode_frame(frame)
        shown = rx.state._frame
        if frame == 0:
            assert np.array_equal(shown, tiny_codec.decode(grid, chroma=plane))
        else:  # both copies lost (and their tokens): decoded as without the side channel
            from simnet.stream.reassembly import Depacketizer
            from codec.tokens import TokenGrid

            depack = Depacketizer(tiny_codec.prior)
            for p in packets:
                if keep(p):
                    depack.add_packet(p)
            lossy = depack.assemble(0, frame)
            filled = get_method("neighbour").recover(lossy, tiny_codec.codebook(64))
            assert lossy.missing.any() and depack.chroma(0, frame) is None
            assert np.array_equal(shown, tiny_codec.decode(TokenGrid(filled, 64, grid.image_size)))


def test_the_receiver_keeps_lost_tokens_in_the_cells_the_coarse_layer_brought(tiny_codec, sample_rgb):
    """mqtt send --coarse: the coarse layer's packets follow each frame's; the receiver fills a lost
    token inside its cell, counts only token packets in its loss statistics, and shows a frame of
    which only the coarse layer arrived."""
    from simnet.stream.reassembly import Depacketizer
    from codec.tokens import CoarseCells, LossyTokenGrid, TokenGrid
    from simnet.mqtt.transport import model_tag, wrap

    rx = LiveReceiver(tiny_codec, get_method("neighbour"), deadline=0.3, stream="t")
    grid = tiny_codec.encode(sample_rgb, 64)
    tag = model_tag(tiny_codec.checksum)
    cells = tiny_codec.cell_map(16)[grid.indices]
    for frame, keep in ((0, lambda p: p.coarse or p.index % 2), (1, lambda p: p.coarse)):
        packets = tiny_codec.packetize(grid, frame=frame, max_tokens=6, seed=frame)
        packets += tiny_codec.coarse_packets(grid, 16, frame=frame, seed=frame, max_tokens=12)
        for p in packets:
            if keep(p):
                assert rx.on_payload(wrap(p.to_bytes(), time.time(), tag), time.monotonic()) == "ok"
        depack = Depacketizer(tiny_codec.prior)
        for p in packets:
            if keep(p):
                depack.add_packet(p)
        lossy = depack.assemble(0, frame, expected=(64, grid.image_size))
        stats = rx.decode_frame(frame)
        expected = LossyTokenGrid(lossy.grid, lossy.missing, CoarseCells(16, cells, tiny_codec.cell_map(16)))
        filled = get_method("neighbour").recover(expected, tiny_codec.codebook(64))
        assert lossy.missing.any() and np.array_equal(tiny_codec.cell_map(16)[filled], cells)
        assert np.array_equal(rx.state._frame, tiny_codec.decode(TokenGrid(filled, 64, grid.image_size)))
    assert stats["frames_shown"] == 2
    token_packets = sum(1 for p in packets if not p.coarse)
    assert stats["packets_lost"] == token_packets // 2 + token_packets  # frame 0 lost half, frame 1 all
