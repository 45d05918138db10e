"""What the commands share: the consoles, the options that recur, argument parsers whose errors
are one line, and the summary table."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from codec.hardware import DEVICES, PRECISIONS

from ..errors import UserError

# progress and notes; one line each (soft_wrap): rich would otherwise break a line at 80 columns
# when stderr is a file or a pipe, and a log or a caller reading lines would see two
console = Console(stderr=True, soft_wrap=True)
# results; written to a file or a pipe, tables keep their full width instead of rich's 80 columns
out_console = Console(width=None if sys.stdout.isatty() else 200)

weights_option = click.option("--weights", type=Path, default=None,
                              help="Folder with tokenizer.safetensors and levels.safetensors "
                                   "(default: the shipped weights).")


def device_option(default: str | None = "auto"):
    return click.option("--device", type=click.Choice(DEVICES), default=default,
                        show_default=default is not None,
                        help="Where the models run (auto: CUDA if torch sees a GPU, else the CPU)"
                             + ("" if default else "; default: the scenario's codec.device") + ".")


def precision_option(default: str | None = "auto"):
    return click.option("--precision", type=click.Choice(PRECISIONS), default=default,
                        show_default=default is not None,
                        help="Model precision (auto: bf16 only where the device has it natively, else fp32)"
                             + ("" if default else "; default: the scenario's codec.precision") + ".")


level_option = click.option("--codebook", "--level", "-k", "level", type=int, default=1024, show_default=True,
                            help="Codebook level K.")


def check_luma_option(chroma: int, luma: bool) -> None:
    """--luma without --chroma: one line, before any work."""
    if luma and not chroma:
        raise UserError("--luma rides in the colour side channel: give --chroma a block size too")


def chroma_options(command):
    """--chroma B, --chroma-step Q and --luma: the colour side channel (codec/colour.py)."""
    from codec.colour import BLOCKS, MAX_STEP

    command = click.option("--luma", is_flag=True,
                           help="With --chroma: send the blocks' luma too (about half as many bytes again; "
                                "it also corrects the regions of lost tokens at block scale).")(command)
    command = click.option("--chroma-step", type=click.IntRange(1, MAX_STEP), default=2, show_default=True,
                           help="Quantisation step of the side channel's Cb/Cr (0-255 scale).")(command)
    return click.option("--chroma", type=click.Choice(["0"] + [str(b) for b in BLOCKS]), default="0",
                        show_default=True, callback=lambda ctx, param, v: int(v),
                        help="Send the picture's colour beside its tokens: Cb/Cr means over blocks of this "
                             "many pixels (64: about 5% more bytes; docs/models.md); 0 = off.")(command)


def load_codec_at(weights: Path | None, level: int | None = None, precision: str = "auto",
                  device: str = "auto"):
    """The codec from `weights` (None: shipped), with `level` (the --codebook option) checked."""
    from codec.zoo import load_codec

    from ..experiment.setup import check_level

    codec = load_codec(weights, precision, device)
    if level is not None:
        check_level(level, codec.level_sizes, "--codebook")
    return codec


def say_compute(compute) -> None:
    console.print(f"compute: {compute.summary()}", highlight=False)


def say_left_out(what: str, unavailable: dict[str, str]) -> None:
    """One line per metric that cannot run here, with the reason."""
    for name, why in unavailable.items():
        console.print(f"[yellow]{what}: {name} cannot run here and is left out ({why})[/]")


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a file") from None


def parse_floats(text: str, what: str) -> list[float]:
    """Comma-separated numbers in [0, 1]."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 <= v <= 1 for v in values):
        raise UserError(f"{what}: every value must lie in [0, 1], got {text!r}")
    return values


def parse_size(text: str) -> tuple[int, int]:
    """HEIGHTxWIDTH -> (height, width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r}: expected HEIGHTxWIDTH, e.g. 256x384") from None
    if not (16 <= h <= 4096 and 16 <= w <= 4096):
        raise UserError(f"--size {text!r}: each side must be 16..4096")
    return h, w


def recovery_spec(ctx, param, value):
    """click callback: a recovery method spec, checked before any model loads."""
    from recovery import RecoveryError, parse_method

    try:
        parse_method(value)
    except RecoveryError as e:
        raise click.BadParameter(str(e)) from None
    return value


def print_summary(summary: list[dict], extra_fields: tuple[str, ...] = ()) -> None:
    """Mean figures per (scenario, method, level, loss rate) as a table on standard output."""
    from ..experiment.metrics import METRICS

    extra_fields = tuple(extra_fields) or tuple(
        m.field for m in METRICS.values() if any(m.field in row for row in summary))
    several = len({row["scenario"] for row in summary}) > 1
    table = Table(title="mean over images")
    split = any(row.get("psnr_lost") is not None for row in summary)
    layered = any(row.get("cells_known") is not None for row in summary)  # a coarse layer was sent
    columns = (("scenario",) if several else ()) + ("method", "K", "loss", "packet loss", "bpp",
                                                    "PSNR dB", "MS-SSIM", "token acc.") \
        + (("PSNR lost", "PSNR kept") if split else ()) + (("cells kept",) if layered else ()) + extra_fields
    for col in columns:
        table.add_column(col, justify="right")
    for row in summary:
        acc = row.get("token_accuracy")
        cells = [row["method"], str(row["codebook"] or "-"), f"{row['loss_rate_target']:.2f}",
                 f"{row.get('loss_rate_packets', 0):.3f}", f"{row['bpp_wire']:.4f}",
                 f"{row['psnr']:.2f}", f"{row['ms_ssim']:.4f}", "-" if acc is None else f"{acc:.3f}"]
        if split:
            cells += ["-" if row.get(f) is None else f"{row[f]:.2f}" for f in ("psnr_lost", "psnr_received")]
        if layered:  # the share of the lost tokens whose coarse cell arrived
            cells.append("-" if row.get("cells_known") is None else f"{row['cells_known']:.2f}")
        cells += [f"{row[f]:.4g}" if f in row else "-" for f in extra_fields]
        table.add_row(*([row["scenario"]] if several else []), *cells)
    out_console.print(table)
