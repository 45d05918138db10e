"""All benchmarks, one after the other; each prints its figures as JSON with its ratios."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import codec_speed  # noqa: E402
import long_run_memory  # noqa: E402
import network_speed  # noqa: E402
import recovery_speed  # noqa: E402

if __name__ == "__main__":
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "auto"
    results = {"network": network_speed.main([]), "codec": codec_speed.main(["--device", device]),
               "recovery": recovery_speed.main(["--device", device, "--repeat", "3"]),
               "memory": long_run_memory.main(["--headline"])}
    out = Path("reports") / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
