"""`simnet encode`, `simnet decode`, `simnet info`: the codec alone, image <-> .vqb file, and a
clip <-> .vqv file (its temporal token stream: simnet/commands/clips.py)."""

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
@click.option("--frames", type=click.IntRange(min=1), default=None, help="A clip: code at most this many frames.")
@click.option("--refresh", type=click.Choice(["periodic", "rolling", "none"]), default="periodic", show_default=True,
              help="A clip: I-frames every --period frames, or a rolling intra band of columns.")
@click.option("--period", type=click.IntRange(min=1), default=30, show_default=True,
              help="A clip: frames between refreshes of every token.")
@click.option("--threshold", type=click.FloatRange(min=0), default=4.0, show_default=True,
              help="A clip: update a token only where the new code lowers its latent distortion by more than "
                   "this many times the frame's mean quantisation error (0: wherever it differs).")
@weights_option
@device_option()
@precision_option()
def encode(image: Path, out: Path, level: int, chroma: int, chroma_step: int, luma: bool, frames: int | None,
           refresh: str, period: int, threshold: float, weights: Path | None, device: str, precision: str):
    """Encode IMAGE to the .vqb bitstream OUT, or a clip (a video file, a folder of frames, or
    `builtin`) to the .vqv file OUT: its temporal token stream, I- and P-frames.

    \b
    Example: simnet encode photo.png photo.vqb --codebook 256
             simnet encode photo.png photo.vqb --chroma 64   (with the colour side channel)
             simnet encode clip.mp4 clip.vqv --frames 60 --chroma 64
    """
    from codec import colour
    from codec.images import load_rgb

    from .clips import encode_clip, is_clip

    check_luma_option(chroma, luma)
    if is_clip(image):
        codec = load_codec_at(weights, level, precision, device)
        encode_clip(image, out, codec, level, chroma, chroma_step, luma, frames, refresh, period, threshold)
        return
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
    """Decode the .vqb BITSTREAM to the image OUT (PNG recommended), or a .vqv clip to OUT: a
    folder of PNGs, a .y4m, .mp4 or .mkv file.

    \b
    Example: simnet decode photo.vqb photo.png
             simnet decode clip.vqv frames/
    """
    from codec.clipfile import MAGIC
    from codec.images import save_rgb

    from .clips import decode_clip

    data = read_bytes(bitstream)
    codec = load_codec_at(weights, None, precision, device)
    if data[:4] == MAGIC:
        decode_clip(data, bitstream, out, codec)
        return
    header, grid = codec.from_bytes(data)
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
    """Print the header of the .vqb file BITSTREAM, or of a .vqv clip with its frames' types and
    sizes (no weights needed).

    \b
    Example: simnet info photo.vqb
    """
    from codec.bitstream import read_header
    from codec.clipfile import MAGIC

    from .clips import clip_info_lines

    data = read_bytes(bitstream)
    fields = clip_info_lines(data, bitstream) if data[:4] == MAGIC else read_header(data).describe()
    if as_json:
        out_console.print_json(json.dumps(fields))
        return
    for k, v in fields.items():
        out_console.print(f"{k:>15}: {v}")
