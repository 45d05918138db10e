"""`simnet encode`, `simnet decode`, `simnet info`: the codec alone, image <-> .vqb file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import UserError
from .common import (check_luma_option, chroma_options, device_option, level_option, load_codec_at, out_console, precision_option, read_bytes,
                     weights_option)


@click.command()
@click.argument("image", type=Path)
@click.argument("out", type=Path)
@level_option
@chroma_options
@weights_option
@device_option()
@precision_option()
def encode(image: Path, out: Path, level: int, chroma: int, chroma_step: int, luma: bool,
           weights: Path | None, device: str, precision: str):
    """Encode IMAGE to the .vqb bitstream OUT.

    \b
    Example: simnet encode photo.png photo.vqb --codebook 256
             simnet encode photo.png photo.vqb --chroma 64   (with the colour side channel)
    """
    from codec import colour
    from codec.images import load_rgb

    check_luma_option(chroma, luma)
    rgb = load_rgb(image)
    codec = load_codec_at(weights, level, precision, device)
    plane = colour.measure(rgb, chroma, chroma_step, luma) if chroma else None
    data = codec.to_bytes(codec.encode(rgb, level), plane)
    out.write_bytes(data)
    pixels = rgb.shape[0] * rgb.shape[1]
    side = f", colour {len(colour.to_bytes(plane))} bytes" if plane else ""
    out_console.print(f"{image} -> {out}: {rgb.shape[1]}x{rgb.shape[0]}, K={level}, "
                      f"{len(data)} bytes{side}, {len(data) * 8 / pixels:.4f} bpp ({codec.device}, {codec.precision})")


@click.command()
@click.argument("bitstream", type=Path)
@click.argument("out", type=Path)
@weights_option
@device_option()
@precision_option()
def decode(bitstream: Path, out: Path, weights: Path | None, device: str, precision: str):
    """Decode the .vqb BITSTREAM to the image OUT (PNG recommended).

    \b
    Example: simnet decode photo.vqb photo.png
    """
    from codec.images import save_rgb

    codec = load_codec_at(weights, None, precision, device)
    header, grid = codec.from_bytes(read_bytes(bitstream))
    try:
        save_rgb(codec.decode(grid, chroma=header.chroma), out)
    except (ValueError, OSError) as e:
        raise UserError(f"{out}: cannot write image ({e})") from None
    out_console.print(f"{bitstream} -> {out}: {header.width}x{header.height}, K={header.level} "
                      f"({codec.device}, {codec.precision})")


@click.command()
@click.argument("bitstream", type=Path)
@click.option("--json", "as_json", is_flag=True, help="Print the header as JSON.")
def info(bitstream: Path, as_json: bool):
    """Print the header of the .vqb file BITSTREAM (no weights needed).

    \b
    Example: simnet info photo.vqb
    """
    from codec.bitstream import read_header

    fields = read_header(read_bytes(bitstream)).describe()
    if as_json:
        out_console.print_json(json.dumps(fields))
        return
    for k, v in fields.items():
        out_console.print(f"{k:>15}: {v}")
