"""The MQTT receiver: reassemble packets by frame, treat packets past the deadline as lost, recover,
decode, publish receiver reports, and serve a live view on a local web port."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

import aiomqtt

from codec.packets import PacketError, parse_packet

from ..experiment.frames import lost_token_overlay
from ..stream import StreamReceiver
from ..stream.vq import VQStreamCodec

from .transport import (ConnectionOptions, MqttError, feedback_topic, model_tag, packets_topic, unwrap,
                        with_reconnect)

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>simnet live: {stream}</title>
<style>body{{font-family:sans-serif;background:#111;color:#eee;margin:16px}}
img{{image-rendering:pixelated;border:1px solid #444;width:45%;margin-right:1%}}
pre{{font-size:14px;background:#222;padding:8px}}</style></head><body>
<h2>simnet live view: stream <code>{stream}</code></h2>
<div><img id="frame" alt="latest decoded frame"><img id="mask" alt="lost tokens (red)"></div>
<pre id="stats">waiting for frames...</pre>
<script>
async function tick() {{
  try {{
    const r = await fetch('state.json', {{cache: 'no-store'}});
    const s = await r.json();
    if (s.frames_shown > 0) {{
      document.getElementById('frame').src = 'frame.png?n=' + s.frames_shown;
      document.getElementById('mask').src = 'mask.png?n=' + s.frames_shown;
    }}
    document.getElementById('stats').textContent = JSON.stringify(s, null, 1);
  }} catch (e) {{}}
  setTimeout(tick, 300);
}}
tick();
</script></body></html>"""


@dataclass
class FrameSlot:
    first_arrival: float
    frame_time: float
    count: int | None = None
    received: set = field(default_factory=set)


class LiveState:
    """What the live view shows; written by the receiver, read by the web server's threads. The
    PNGs are made when the page asks for them (a few times a second), not for every frame: at
    10 fps encoding two PNGs per frame would cost the receiver a fifth of its time."""

    def __init__(self, stream: str):
        self.stream = stream
        self.lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._missing: np.ndarray | None = None
        self._png: dict[str, bytes] = {}
        self.stats: dict = {"frames_shown": 0}

    def update(self, frame: np.ndarray, missing: np.ndarray, stats: dict) -> None:
        with self.lock:
            self._frame, self._missing, self.stats = frame, missing, dict(stats)
            self._png = {}

    def png(self, which: str) -> bytes:
        """'frame' (the latest decoded frame) or 'mask' (it with lost tokens in red)."""
        with self.lock:
            if which not in self._png:
                if self._frame is None:
                    return b""
                self._png[which] = _png(self._frame if which == "frame"
                                        else lost_token_overlay(self._frame, self._missing))
            return self._png[which]


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def serve_live_view(state: LiveState, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/":
                body, kind = PAGE.format(stream=state.stream).encode(), "text/html; charset=utf-8"
            elif path == "/state.json":
                with state.lock:
                    body, kind = json.dumps(state.stats).encode(), "application/json"
            elif path in ("/frame.png", "/mask.png"):
                body, kind = state.png(path[1:-4]), "image/png"
            else:
                body, kind = None, None
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class LiveReceiver:
    """The live receiver's packet bookkeeping (window, deadline, statistics, live view) around the
    stream's receiver, independent of MQTT (tests drive it directly)."""

    WINDOW = 64  # frames either side of the newest shown one that a packet may belong to
    REANCHOR_AFTER = 2.0  # seconds of packets outside the window, none inside: the sender restarted

    def __init__(self, codec, recovery, deadline: float, stream: str = "demo",
                 save_dir: Path | None = None, max_backlog: int = 2):
        self.codec, self.recovery, self.deadline = codec, recovery, deadline
        # the packets describe themselves (full headers): the level here is the sender's business
        self.rx = StreamReceiver(VQStreamCodec(codec, level=codec.base_level))
        self.slots: dict[int, FrameSlot] = {}
        self.closed: set[int] = set()
        self.save_dir = save_dir
        self.max_backlog = max_backlog
        self.state = LiveState(stream)
        self.stats = {"frames_shown": 0, "frames_skipped": 0, "packets_received": 0, "packets_expected": 0,
                      "packets_lost": 0, "packets_late": 0, "garbage": 0, "oversized": 0, "duplicates": 0,
                      "loss_rate": 0.0, "late_share": 0.0, "jitter_ms": 0.0, "token_loss_last": 0.0,
                      "decode_ms_last": 0.0, "fps": 0.0}
        self.stats.update(frames_lost=0, wrong_model=0, other_stream=0, out_of_window=0)
        self.model = model_tag(codec.checksum)
        self._anchor: int | None = None  # the window's centre before any frame is shown
        self._outside_since: float | None = None
        self._jitter = 0.0
        self._last_transit: float | None = None
        self._last_closed: int | None = None
        self._last_count = 0  # token packets of the last frame closed
        self._shown_times: list[float] = []

    def on_payload(self, payload: bytes, now: float) -> str:
        try:
            frame_time, data, model = unwrap(payload)
        except MqttError as e:
            self.stats["oversized" if "oversized" in str(e) else "garbage"] += 1
            return "garbage"
        if model != self.model:  # made with other weights: its tokens would decode to nonsense
            self.stats["wrong_model"] += 1
            return "wrong_model"
        try:
            packet = parse_packet(data)
        except PacketError:
            self.stats["garbage"] += 1
            return "garbage"
        if packet.stream != 0:
            self.stats["other_stream"] += 1
            return "other_stream"
        if not self._in_window(packet.frame, now):
            self.stats["out_of_window"] += 1
            return "out_of_window"
        if packet.frame in self.closed:
            self.stats["packets_late"] += 1
            return "late"
        status = self.rx.reassembly.put_packet(packet)
        if status == "duplicate":
            self.stats["duplicates"] += 1
            return status
        if status != "ok":
            self.stats["garbage"] += 1
            return status
        slot = self.slots.setdefault(packet.frame, FrameSlot(now, frame_time))
        if not packet.coarse:  # the loss statistics count the frame's token packets
            slot.count = packet.count
            slot.received.add(packet.index)
        self.stats["packets_received"] += 1
        transit = time.time() - frame_time  # RFC 3550 interarrival jitter, clock offset cancels
        if self._last_transit is not None:
            self._jitter += (abs(transit - self._last_transit) - self._jitter) / 16
        self._last_transit = transit
        self.stats["jitter_ms"] = self._jitter * 1e3
        return "ok"

    def _in_window(self, frame: int, now: float) -> bool:
        """Whether `frame` is near the stream's current frame: a forged or stray frame number far
        away would otherwise hold memory and wreck the loss statistics. Packets only from outside
        the window for REANCHOR_AFTER seconds mean the sender started again: follow it."""
        centre = self._last_closed if self._last_closed is not None else self._anchor
        if centre is None or abs(frame - centre) <= self.WINDOW:
            if centre is None:
                self._anchor = frame
            self._outside_since = None
            return True
        if self._outside_since is None:
            self._outside_since = now
        elif now - self._outside_since > self.REANCHOR_AFTER:
            self._anchor, self._last_closed, self._outside_since = frame, None, None
            self.closed.clear()
            return True
        return False

    def due_frames(self, now: float) -> list[int]:
        due = sorted(f for f, s in self.slots.items() if now >= s.first_arrival + self.deadline)
        if len(due) > self.max_backlog:  # bounded work: show the newest, count the rest skipped
            for f in due[:-self.max_backlog]:
                self._close(f, shown=False)
            due = due[-self.max_backlog:]
        return due

    def _close(self, frame: int, shown: bool) -> FrameSlot:
        slot = self.slots.pop(frame)
        self.closed.add(frame)
        if len(self.closed) > 10_000:
            self.closed = set(sorted(self.closed)[-5_000:])
        # a frame of which only its coarse layer arrived says nothing of its token packets: as many
        # as the last frame that did
        count = slot.count or len(slot.received) or self._last_count
        self._last_count = count
        self.stats["packets_expected"] += count
        self.stats["packets_lost"] += count - len(slot.received)
        if self._last_closed is not None and frame > self._last_closed + 1:
            gap = frame - self._last_closed - 1  # frames of which no packet arrived at all
            self.stats["frames_lost"] += gap
            self.stats["packets_expected"] += gap * count
            self.stats["packets_lost"] += gap * count
        self._last_closed = frame if self._last_closed is None else max(self._last_closed, frame)
        if not shown:
            self.stats["frames_skipped"] += 1
            self.rx.reassembly.forget(frame)
        return slot

    def decode_frame(self, frame: int) -> dict:
        """Close `frame`: assemble, recover, decode, update the statistics and the live view."""
        t0 = time.perf_counter()
        self._close(frame, shown=True)
        arrival = self.rx.take(frame)
        decoded = self.rx.decode(arrival, self.recovery)
        rgb, lossy = decoded.rgb, arrival.lossy
        st = self.stats
        st["frames_shown"] += 1
        st["token_loss_last"] = lossy.loss_rate
        st["decode_ms_last"] = (time.perf_counter() - t0) * 1e3
        lost_or_late = st["packets_lost"]
        st["loss_rate"] = lost_or_late / st["packets_expected"] if st["packets_expected"] else 0.0
        st["late_share"] = st["packets_late"] / lost_or_late if lost_or_late else 0.0
        now = time.monotonic()
        self._shown_times = [t for t in self._shown_times if now - t < 5.0] + [now]
        st["fps"] = (len(self._shown_times) - 1) / max(1e-9, self._shown_times[-1] - self._shown_times[0]) \
            if len(self._shown_times) > 1 else 0.0
        st["last_frame"] = frame
        self.state.update(rgb, lossy.missing, st)
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(self.save_dir / f"frame{frame:06d}.png")
        return dict(st)

    def flush(self) -> None:
        for frame in sorted(self.slots):
            self.decode_frame(frame)


async def receive_stream(options: ConnectionOptions, stream: str, receiver: LiveReceiver,
                         log=print, stop: asyncio.Event | None = None, frames: int | None = None,
                         idle_timeout: float | None = None) -> dict:
    """Receive until `frames` frames were shown, `stop` is set, or nothing arrived for
    `idle_timeout` seconds; reconnects when the broker goes away."""
    last_arrival = [time.monotonic()]
    stale_after = 3 * options.keepalive  # a connection silent this long may be half dead

    async def session(client):
        await client.subscribe(packets_topic(stream), qos=options.qos)
        connected = time.monotonic()

        async def pump():
            async for message in client.messages:
                last_arrival[0] = time.monotonic()
                receiver.on_payload(bytes(message.payload), time.monotonic())

        pump_task = asyncio.create_task(pump())
        try:
            while True:
                if stop is not None and stop.is_set():
                    break
                if frames is not None and receiver.stats["frames_shown"] + receiver.stats["frames_skipped"] >= frames:
                    break
                if idle_timeout is not None and time.monotonic() - last_arrival[0] > idle_timeout:
                    break
                if time.monotonic() - max(last_arrival[0], connected) > stale_after:
                    raise aiomqtt.MqttError(f"no traffic for {stale_after} s (3 keepalives): reconnecting")
                if pump_task.done():
                    pump_task.result()  # re-raises a lost connection: reconnect
                for frame in receiver.due_frames(time.monotonic()):
                    report = await asyncio.to_thread(receiver.decode_frame, frame)
                    await client.publish(feedback_topic(stream), json.dumps(report).encode(), qos=0)
                await asyncio.sleep(0.01)
        finally:
            pump_task.cancel()
        return dict(receiver.stats)

    result = await with_reconnect(options, session, log, stop)
    return result or dict(receiver.stats)
