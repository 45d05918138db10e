"""The `simnet` entry point and its error policy: a wrong input prints one line (what is wrong,
and where) and exits with status 2; anything else is a bug and keeps its traceback. The commands
themselves live in simnet/commands/."""

from __future__ import annotations

import sys

import click

from codec.hardware import tune_allocator

from .commands import bench, coding, evaluation, mqtt, scenarios, training
from .errors import expected_errors

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="simnet")
def app():
    """Streaming transmission simulator with packet-loss recovery for a generative image codec."""


for command in (coding.encode, coding.decode, coding.info, evaluation.eval_cmd, scenarios.run,
                scenarios.sweep, scenarios.report, bench.bench, training.train, mqtt.mqtt):
    app.add_command(command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tune_allocator()
    try:
        result = app.main(args=argv, prog_name="simnet", standalone_mode=False)
        if isinstance(result, int):
            return result
    except click.UsageError as e:
        where = f" ({e.ctx.command_path})" if e.ctx else ""
        print(f"simnet: error: {e.format_message()}{where}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.Abort:
        print("simnet: aborted", file=sys.stderr)
        return 130
    except Exception as e:
        if isinstance(e, expected_errors()):
            print(f"simnet: error: {e}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
