"""The fuzz harness (benchmarks/fuzz.py) at a small volume, every target, so that it cannot rot:
a target that no longer runs, or an input that escapes a parser's own error, fails the suite."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import fuzz  # noqa: E402


def test_every_fuzz_target_runs_and_nothing_escapes(tmp_path, capsys):
    out = tmp_path / "fuzz.json"
    status = fuzz.main(["--inputs", "1500", "--seed", "11", "--json", str(out)])
    results = json.loads(out.read_text())
    names = " ".join(r["target"] for r in results)
    for target in ("read_bitstream", "read_clip", "parse_packet", "parse_compact", "assemble", "load_scenario", "read_frames"):
        assert target in names
    assert all(r["inputs"] == 1500 for r in results)
    assert all(r["accepted"] > 0 and (r["rejected"] > 0 or "depacketizer" in r["target"]) for r in results)
    assert status == 0, [r["failures"] for r in results if r["failures"]]
