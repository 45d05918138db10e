"""Memory of long runs: peak RSS of `simnet run` on the builtin images at a small size for a
short and a long stream (default 1,000 and 10,000 frames), each in a fresh process. Results
stream to disk, so the long run's peak should stay close to the short one's (ratio ~1), and the
headline scenario's peak stays under 2 GB.

    python benchmarks/long_run_memory.py [--frames 1000,10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = """
name: long{frames}
source: {{images: builtin, count: {frames}, size: [32, 48], fps: 30}}
codec: {{codebook: 1024}}
packets: {{mtu: 1200 B, max_tokens: 2, interleave: random, seed: 1}}
channel:
  bandwidth: 20 Mbit/s
  delay: {{base: 30 ms, jitter: 5 ms}}
  loss: {{model: gilbert_elliott, rate: 0.2, burst: 3}}
receiver: {{deadline: 150 ms, recovery: [neighbour, none]}}
"""


def run_in_child(args: list[str]) -> list[str]:
    return [sys.executable, "-c",
            "import resource, sys; from simnet.cli import main; code = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)", *args]


def measure(args: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(run_in_child(args), check=True, capture_output=True, text=True)
    return int(proc.stdout.split()[-1]) * 1024 / 1e9, time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="1000,10000")
    ap.add_argument("--headline", action="store_true", help="also measure scenarios/lossy20.yaml")
    args = ap.parse_args(argv)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(f) for f in args.frames.split(",")]:
            path = Path(tmp) / f"long{n}.yaml"
            path.write_text(SCENARIO.format(frames=n))
            rss, wall = measure(["run", str(path), "--out", tmp, "--no-pdf"])
            result[f"frames_{n}"] = {"peak_rss_GB": round(rss, 3), "wall_s": round(wall, 1),
                                     "json_MB": round((Path(tmp) / f"long{n}.json").stat().st_size / 1e6, 2)}
        counts = sorted(int(f) for f in args.frames.split(","))
        if len(counts) > 1:
            a, b = result[f"frames_{counts[0]}"], result[f"frames_{counts[-1]}"]
            result["rss_ratio_long_over_short"] = round(b["peak_rss_GB"] / a["peak_rss_GB"], 3)
        if args.headline:
            rss, wall = measure(["run", str(ROOT / "scenarios" / "lossy20.yaml"), "--out", tmp])
            result["lossy20"] = {"peak_rss_GB": round(rss, 3), "wall_s": round(wall, 1),
                                 "under_2GB": rss < 2.0}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
