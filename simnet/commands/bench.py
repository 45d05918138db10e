"""`simnet bench`: the performance figures of benchmarks/, each against its baseline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from ..errors import UserError

SCRIPTS = {"all": "run_all.py", "network": "network_speed.py", "codec": "codec_speed.py",
           "memory": "long_run_memory.py"}


@click.command()
@click.argument("which", type=click.Choice(list(SCRIPTS)), default="all")
def bench(which):
    """The performance figures, each as a ratio against a baseline measured in the same run
    (runs the scripts in benchmarks/ of a source checkout).

    \b
    Example: simnet bench network
    """
    root = Path(__file__).resolve().parents[2] / "benchmarks"
    if not root.is_dir():
        raise UserError(f"{root}: benchmarks/ not found; run from a source checkout of simnet")
    return subprocess.call([sys.executable, str(root / SCRIPTS[which])])
