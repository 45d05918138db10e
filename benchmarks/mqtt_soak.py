"""Soak: `simnet mqtt send` and `simnet mqtt receive` (separate processes, as deployed) stream
through a real mosquitto that is killed (SIGKILL) and restarted every few minutes, with 20% bursty
loss applied by the sender's channel model. Reports frames sent, shown, skipped and lost, the time
from each broker restart to the next frame shown (goal: under 5 s), and the receiver's resident
memory over time (goal: no growth beyond a stated bound after warm-up).

    python benchmarks/mqtt_soak.py --minutes 30 --restart-every 180 --json soak.json   # for the record
    python benchmarks/mqtt_soak.py --minutes 1 --restart-every 20                      # the test's version

Frames are small (64x96 by default, `--size`) so the shipped codec keeps up in real time on two
cores; the loss is lossy20's channel (Gilbert-Elliott, mean burst 3) at `--loss`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class FeedbackWatcher:
    """Subscribes to the receiver's reports (reconnecting across broker restarts) and keeps
    (time, frames shown) of each."""

    def __init__(self, port: int, stream: str):
        self.port, self.stream = port, stream
        self.reports: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self):
        import aiomqtt

        from simnet.mqtt.transport import feedback_topic

        while not self.stop.is_set():
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, keepalive=2, timeout=2) as client:
                    await client.subscribe(feedback_topic(self.stream))
                    async for message in client.messages:
                        try:
                            shown = int(json.loads(bytes(message.payload))["frames_shown"])
                        except (ValueError, KeyError, TypeError):
                            continue
                        self.reports.append((time.monotonic(), shown))
                        if self.stop.is_set():
                            return
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)


def soak(minutes: float, restart_every: float, fps: float, size: str, loss: float, stream: str = "soak",
         level: int = 1024, log=print) -> dict:
    from simnet.mqtt.transport import Mosquitto

    duration = minutes * 60
    frames = max(1, int(duration * fps))
    broker = Mosquitto().start()
    cli = [sys.executable, "-m", "simnet.cli", "mqtt"]
    common = ["--broker", f"127.0.0.1:{broker.port}", "--stream", stream, "--keepalive", "2"]
    receiver = subprocess.Popen(cli + ["receive", *common, "--view-port", "0", "--idle-timeout", "20",
                                       "--recovery", "neighbour"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    watcher = FeedbackWatcher(broker.port, stream)
    watcher.thread.start()
    time.sleep(8)  # the receiver loads its models and subscribes
    started = time.monotonic()
    sender = subprocess.Popen(cli + ["send", *common, "--frames", str(frames), "--fps", str(fps), "--size", size,
                                     "--level", str(level), "--channel", str(ROOT / "scenarios" / "lossy20.yaml"),
                                     "--loss", str(loss)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    restarts, rss = [], []
    next_restart = started + restart_every
    while sender.poll() is None:
        now = time.monotonic()
        value = rss_mb(receiver.pid)
        if value is not None:
            rss.append((round(now - started, 1), round(value, 1)))
        if now >= next_restart and now - started < duration - 5:
            shown_before = watcher.reports[-1][1] if watcher.reports else 0
            broker.proc.kill()  # SIGKILL: no goodbye to the clients
            broker.proc.wait()
            killed = time.monotonic()
            time.sleep(1.0)
            broker.start()
            back = time.monotonic()
            restarts.append({"killed_at_s": round(killed - started, 1), "down_s": round(back - killed, 2),
                             "shown_before": shown_before, "_back": back})
            log(f"broker killed at {killed - started:.0f} s, back after {back - killed:.1f} s")
            next_restart += restart_every
        time.sleep(1.0)
    sent_out, sent_err = sender.communicate()
    rx_out, rx_err = receiver.communicate(timeout=120)
    watcher.stop.set()
    broker.stop()
    for r in restarts:  # the first report after the broker came back with more frames shown
        back = r.pop("_back")
        after = [t for t, shown in watcher.reports if t > back and shown > r["shown_before"]]
        r["resumed_after_s"] = round(after[0] - back, 2) if after else None
    try:
        stats = json.loads(rx_out[rx_out.index("{"):])
    except ValueError:
        stats = {"error": (rx_err or rx_out)[-500:]}
    warm = [v for t, v in rss if t > min(60.0, duration * 0.2)]
    result = {
        "minutes": minutes, "fps": fps, "size": size, "loss": loss, "restart_every_s": restart_every,
        "frames_sent": frames if sender.returncode == 0 else None,
        "sender": sent_out.strip().splitlines()[-1] if sent_out.strip() else sent_err[-300:],
        "frames_shown": stats.get("frames_shown"), "frames_skipped": stats.get("frames_skipped"),
        "frames_lost": stats.get("frames_lost"), "loss_rate": stats.get("loss_rate"),
        "receiver_exit": receiver.returncode, "restarts": restarts,
        "resume_max_s": max((r["resumed_after_s"] for r in restarts if r["resumed_after_s"] is not None), default=None),
        "rss_mb": rss[::max(1, len(rss) // 60)],
        "rss_after_warmup_mb": {"first": warm[0], "max": max(warm), "last": warm[-1]} if warm else None,
        "rss_growth_after_warmup_mb": round(max(warm) - warm[0], 1) if warm else None,
    }
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--restart-every", type=float, default=180, help="seconds between broker kills")
    parser.add_argument("--fps", type=float, default=5)
    parser.add_argument("--size", default="64x96")
    parser.add_argument("--loss", type=float, default=0.2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = soak(args.minutes, args.restart_every, args.fps, args.size, args.loss)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    ok = result["resume_max_s"] is not None and result["resume_max_s"] < 5
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
