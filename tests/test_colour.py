"""The colour side channel: block chroma measured, coded bit-exact, applied, and carried in .vqb."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from codec import colour
from codec.bitstream import BitstreamError, HEADER_BYTES, read_bitstream, read_header, write_bitstream
from codec.colour import ColourPlane, ColourError
from codec.entropy import Prior
from codec.tokens import TokenGrid


def picture(h=96, w=160, seed=0):
    """Smooth colour regions with texture: chroma that varies from block to block."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([120 + 90 * np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in (0.0, 1.7, 3.1)], -1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(colour.BLOCKS), st.integers(1, colour.MAX_STEP), st.integers(1, 300),
       st.integers(1, 300), st.booleans(), st.integers(0, 2**32 - 1))
def test_colour_round_trips_bit_exact(block, step, h, w, luma, seed):
    rng = np.random.default_rng(seed)
    shape = colour.blocks_for((h, w), block)
    limit = 128 // step
    values = [rng.integers(-limit, limit + 1, shape) for _ in range(3)]
    plane = ColourPlane(block, step, values[0], values[1], values[2] if luma else None)
    data = colour.to_bytes(plane)
    assert colour.section_length(data) == len(data)
    back = colour.from_bytes(data, (h, w))
    assert back == plane and (back.luma is None) == (not luma)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(1, 600), st.integers(1, 600))
def test_junk_colour_sections_fail_with_their_error_only(data, h, w):
    try:
        colour.from_bytes(data, (h, w))
    except ColourError:
        pass


def test_settings_are_checked_in_one_line():
    with pytest.raises(ColourError, match="chroma block 48"):
        colour.measure(picture(), 48)
    with pytest.raises(ColourError, match="chroma step 0"):
        colour.measure(picture(), 64, 0)
    with pytest.raises(ColourError, match="do not fit"):
        colour.apply(picture(64, 64), colour.measure(picture(), 32))


def test_applying_the_originals_chroma_takes_back_a_colour_cast():
    original = picture()
    # what a decoder that loses colour does: the right structure with the wrong chroma
    cast = np.clip(original.astype(int) + [25, -10, -30], 0, 255).astype(np.uint8)
    plane = colour.measure(original, 32, 2)
    fixed = colour.apply(cast, plane)

    def chroma_error(x):
        ycc = x.astype(float) @ colour.TO_YCC.T - original.astype(float) @ colour.TO_YCC.T
        return np.abs(ycc[..., 1:]).mean()

    assert chroma_error(fixed) < 0.2 * chroma_error(cast)
    # luma is the decoder's: the side channel leaves it alone (to rounding)
    luma = lambda x: x.astype(float) @ colour.TO_YCC[0]  # noqa: E731
    assert np.abs(luma(fixed) - luma(cast)).mean() < 1.0
    # block means after the swap are the sent ones, to the quantisation step
    ycc = fixed.astype(float) @ colour.TO_YCC.T
    assert np.abs(colour.block_means(ycc[..., 1], 32) - plane.cb * 2).max() < 2.0
    # and the original itself barely moves
    assert np.abs(colour.apply(original, plane).astype(int) - original).mean() < 1.0


def test_with_luma_the_blocks_brightness_comes_back_too():
    """A region gone wrong (as a lost token's fill does): luma block means take back its
    brightness at block scale, chroma alone cannot."""
    original = picture()
    damaged = original.copy()
    damaged[32:64, 32:96] = 40  # a dark, grey patch
    luma = lambda x: x.astype(float) @ colour.TO_YCC[0]  # noqa: E731
    errors = {}
    for with_luma in (False, True):
        fixed = colour.apply(damaged, colour.measure(original, 32, 2, with_luma))
        errors[with_luma] = np.abs(luma(fixed) - luma(original))[32:64, 32:96].mean()
    assert errors[True] < 0.5 * errors[False]
    plane = colour.measure(original, 32, 2, True)
    assert colour.from_bytes(colour.to_bytes(plane), original.shape[:2]).luma is not None
    assert len(colour.to_bytes(plane)) > len(colour.to_bytes(colour.measure(original, 32, 2)))


def test_vqb_with_a_colour_section():
    rng = np.random.default_rng(0)
    grid = TokenGrid(rng.integers(0, 64, (6, 10)), 64, (96, 160))
    prior = Prior(np.arange(64) + 1.0)
    plain = write_bitstream(grid, prior, b"abcd")
    assert plain[4] == 1  # no side channel: version 1, byte for byte as before
    plane = colour.measure(picture(), 64, 2)
    data = write_bitstream(grid, prior, b"abcd", plane)
    assert data[4] == 2
    header, back = read_bitstream(data, lambda k: prior)
    assert np.array_equal(back.indices, grid.indices) and header.chroma == plane
    fields = header.describe()
    assert fields["file_bytes"] == len(data) and fields["colour_bytes"] == len(data) - len(plain)
    assert fields["chroma_block"] == 64 and fields["chroma_blocks"] == "2x3"
    assert read_header(plain).chroma is None and "chroma_block" not in read_header(plain).describe()
    with pytest.raises(ValueError, match="do not fit"):
        write_bitstream(grid, prior, b"abcd", colour.measure(picture(64, 64), 64))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255))
def test_corrupting_a_vqb_with_colour_is_caught(position, value):
    rng = np.random.default_rng(1)
    grid = TokenGrid(rng.integers(0, 64, (6, 10)), 64, (96, 160))
    prior = Prior.uniform(64)
    data = bytearray(write_bitstream(grid, prior, b"abcd", colour.measure(picture(), 32, 2)))
    position %= len(data)
    if data[position] == value:
        return
    data[position] = value
    with pytest.raises(BitstreamError):
        read_bitstream(bytes(data), lambda k: prior)


def test_a_colour_section_that_overruns_the_file_is_named():
    rng = np.random.default_rng(1)
    grid = TokenGrid(rng.integers(0, 64, (6, 10)), 64, (96, 160))
    prior = Prior.uniform(64)
    data = bytearray(write_bitstream(grid, prior, b"abcd", colour.measure(picture(), 32, 2)))
    data[HEADER_BYTES + 1: HEADER_BYTES + 3] = (4000).to_bytes(2, "little")  # the section's length
    import struct
    import zlib
    body = bytes(data[:-4])
    with pytest.raises(BitstreamError, match="colour section"):
        read_bitstream(body + struct.pack("<I", zlib.crc32(body)), lambda k: prior)
