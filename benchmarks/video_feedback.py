"""Does feedback pay for a temporal token stream? The receiver reports the positions it lacks
(lost, or stale over a loss) over the reverse path; the sender's next P-frame after the feedback
delay resends them whatever changed. Against the same stream without feedback, at the same loss
(Gilbert-Elliott bursts, seeded, the same pattern of lost packets for both where the packet counts
allow), measured in the same run: PSNR, stale tokens, and the bits the resent tokens cost.

A frame-by-frame loop (no SimPy network): packet i of the stream is lost when the loss process's
i-th draw says so; the report reaches the sender `delay` frames later (an RTT of delay / fps).

    python benchmarks/video_feedback.py --clip builtin:carphone --frames 60 --loss 0.2 --delay 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(codec, path, frames: int, loss: float, burst: float, delay: int | None, seed: int, method_name: str,
        max_tokens: int) -> dict:
    from codec.metrics import quality
    from codec.temporal import Refresh
    from codec.video import read_frames
    from recovery import get_method
    from simnet.network.loss_models import GilbertElliott
    from simnet.stream import StreamReceiver, make_codec
    from simnet.stream.receiver import unsure

    stream = make_codec("vq", image_codec=codec, level=1024, chroma=64, max_tokens=max_tokens,
                        refresh=Refresh("periodic", 30))
    receiver = StreamReceiver(stream)
    method = get_method(method_name)
    channel = GilbertElliott.from_rate_and_burst(loss, burst, seed=seed)
    reports: dict[int, np.ndarray] = {}  # frame the report reaches the sender -> positions lacked
    psnr, bits, stale, resent = [], [], [], []
    for i, rgb in enumerate(read_frames(path, frames)):
        resend = reports.pop(i, None) if delay is not None else None
        frame = stream.encode_temporal(i, rgb, resend=resend)
        bits.append(frame.payload_bytes * 8)
        resent.append(int(resend.sum()) if resend is not None and frame.frame_type == "P" else 0)
        receiver.expect(i, stream.signal(frame))  # what the sender signals: a frame of which nothing arrived is all lost
        for unit in frame.units:
            if not channel.drop():
                receiver.put_wire(unit)
        shown = receiver.decode(receiver.take(i), method)
        psnr.append(quality(rgb, shown.rgb)["psnr"])
        stale.append(int(shown.stale.sum()) if shown.stale is not None else 0)
        lacking = unsure(shown)
        if delay is not None and lacking is not None:
            due = i + delay
            reports[due] = lacking if due not in reports else reports[due] | lacking
    return {"psnr": float(np.mean(psnr)), "bits_per_frame": float(np.mean(bits)),
            "stale_tokens": float(np.mean(stale)), "resent_tokens_per_frame": float(np.mean(resent))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="builtin:carphone")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--loss", type=float, default=0.2)
    ap.add_argument("--burst", type=float, default=3.0)
    ap.add_argument("--delay", type=int, default=2, help="frames from a loss to the sender's resend (RTT x fps)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--method", default="previous")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from codec.zoo import load_codec
    from simnet.training.video_data import clip_path

    codec = load_codec(precision=args.precision)
    path = clip_path(args.clip)
    clean = run(codec, path, args.frames, 0.0, 1.0, None, 0, args.method, args.max_tokens)
    rows = []
    for seed in range(args.seeds):
        without = run(codec, path, args.frames, args.loss, args.burst, None, seed, args.method, args.max_tokens)
        with_fb = run(codec, path, args.frames, args.loss, args.burst, args.delay, seed, args.method, args.max_tokens)
        rows.append({"seed": seed, "without": without, "with_feedback": with_fb})
        print(json.dumps(rows[-1]), flush=True)
    summary = {
        "clip": args.clip, "frames": args.frames, "loss": args.loss, "burst": args.burst, "delay_frames": args.delay,
        "method": args.method, "no_loss_psnr": round(clean["psnr"], 3),
        "no_loss_bits_per_frame": round(clean["bits_per_frame"], 1),
        "drop_db_without": round(clean["psnr"] - np.mean([r["without"]["psnr"] for r in rows]), 3),
        "drop_db_with_feedback": round(clean["psnr"] - np.mean([r["with_feedback"]["psnr"] for r in rows]), 3),
        "stale_without": round(float(np.mean([r["without"]["stale_tokens"] for r in rows])), 2),
        "stale_with_feedback": round(float(np.mean([r["with_feedback"]["stale_tokens"] for r in rows])), 2),
        "bits_ratio_feedback_over_without": round(float(np.mean([r["with_feedback"]["bits_per_frame"] for r in rows])
                                                        / np.mean([r["without"]["bits_per_frame"] for r in rows])), 3),
        "compute": codec.compute.describe()}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
