"""`simnet bench`: the performance figures of benchmarks/, each against its baseline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from ..errors import UserError
from .common import device_option

SCRIPTS = {"all": "run_all.py", "network": "network_speed.py", "codec": "codec_speed.py",
           "recovery": "recovery_speed.py", "memory": "long_run_memory.py"}
TAKES_DEVICE = ("all", "codec", "recovery")  # the others run no model or run `simnet run`


@click.command()
@click.argument("which", type=click.Choice(list(SCRIPTS)), default="all")
@device_option()
def bench(which, device):
    """The performance figures, each as a ratio against a baseline measured in the same run
    (runs the scripts in benchmarks/ of a source checkout); the CPU capability and the device
    come with them. Each model timing is taken at both precisions (bf16 and fp32).

    \b
    Example: simnet bench network
    """
    root = Path(__file__).resolve().parents[2] / "benchmarks"
    if not root.is_dir():
        raise UserError(f"{root}: benchmarks/ not found; run from a source checkout of simnet")
    extra = ["--device", device] if which in TAKES_DEVICE else []
    return subprocess.call([sys.executable, str(root / SCRIPTS[which]), *extra])
