import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from codec.bitstream import (BitstreamError, HEADER_BYTES, read_bitstream, read_header,
                             write_bitstream)
from codec.entropy import EntropyError, Prior, decode_symbols, encode_symbols
from codec.tokens import TokenGrid


def skewed_prior(k=1024, seed=0):
    rng = np.random.default_rng(seed)
    return Prior(rng.pareto(1.5, k) * 100)


def test_entropy_round_trip_and_cost_close_to_cross_entropy():
    prior = skewed_prior()
    symbols = np.random.default_rng(1).choice(1024, 1536, p=prior.probabilities)
    data = encode_symbols(symbols, prior)
    assert np.array_equal(decode_symbols(data, len(symbols), prior), symbols)
    bits, ideal = len(data) * 8, prior.information_bits(symbols)
    assert ideal <= bits <= ideal * 1.01 + 32


def test_uniform_prior_costs_log2_k():
    prior = Prior.uniform(256)
    symbols = np.arange(256).repeat(4)
    assert abs(len(encode_symbols(symbols, prior)) * 8 - 8 * len(symbols)) <= 32


def test_partial_words_are_an_error():
    # An ANS decoder cannot tell a wrong symbol count on its own: the bitstream's and packets'
    # headers fix the count and their CRCs protect it (tests below).
    prior = skewed_prior()
    data = encode_symbols(np.arange(100), prior)
    with pytest.raises(EntropyError, match="32-bit words"):
        decode_symbols(data[:-1], 100, prior)


def test_out_of_range_symbols_rejected():
    with pytest.raises(ValueError):
        encode_symbols(np.array([0, 16]), Prior.uniform(16))


def _grid(h=3, w=5, k=64, seed=0):
    rng = np.random.default_rng(seed)
    return TokenGrid(rng.integers(0, k, (h, w)), k, (h * 16 - 5, w * 16 - 1))


def test_bitstream_round_trip_bit_exact():
    grid = _grid()
    prior = Prior(np.arange(64) + 1.0)
    data = write_bitstream(grid, prior, b"\x01\x02\x03\x04")
    header, back = read_bitstream(data, lambda k: prior)
    assert np.array_equal(back.indices, grid.indices)
    assert back.image_size == grid.image_size and back.level == 64
    assert header.model_checksum == b"\x01\x02\x03\x04"
    assert header.describe()["file_bytes"] == len(data)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[:10], "truncated"),
    (lambda d: b"XXXX" + d[4:], "magic"),
    (lambda d: d[:4] + b"\x07" + d[5:], "version"),
    (lambda d: d[:HEADER_BYTES] + bytes([d[HEADER_BYTES] ^ 1]) + d[HEADER_BYTES + 1:], "CRC"),
    (lambda d: d[:-1], "CRC"),
])
def test_bitstream_errors_are_named(mutate, message):
    prior = Prior.uniform(64)
    data = write_bitstream(_grid(), prior, b"abcd")
    with pytest.raises(BitstreamError, match=message):
        read_bitstream(mutate(data), lambda k: prior)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_bitstream_parser(data):
    prior = Prior.uniform(64)
    try:
        read_bitstream(data, lambda k: prior)
    except BitstreamError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 200))
def test_random_corruption_of_a_valid_bitstream_is_caught(position, value):
    prior = Prior.uniform(64)
    data = bytearray(write_bitstream(_grid(), prior, b"abcd"))
    position %= len(data)
    if data[position] == value % 256:
        return
    data[position] = value % 256
    with pytest.raises(BitstreamError):
        read_bitstream(bytes(data), lambda k: prior)
