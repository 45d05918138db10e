"""Print the project's requirements from pyproject.toml, one per line, for environments that
install the project with --no-deps (the pyiqa environment brings its own torch).

    python scripts/requirements.py --without torch --extra test
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path


def package_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


def requirements(without: list[str], extras: list[str]) -> list[str]:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [r for r in reqs if package_name(r) not in {w.lower() for w in without}]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--without", action="append", default=[])
    ap.add_argument("--extra", action="append", default=[])
    args = ap.parse_args()
    print("\n".join(requirements(args.without, args.extra)))
