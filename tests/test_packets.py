import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from codec.entropy import Prior
from codec.packets import OVERHEAD_BYTES, PacketError, interleave_order, packetize, parse_packet
from codec.tokens import TokenGrid
from simnet.stream.reassembly import Depacketizer


def make_grid(h=32, w=48, k=1024, seed=0):
    rng = np.random.default_rng(seed)
    prior = Prior(rng.pareto(1.5, k) * 100)
    grid = TokenGrid(rng.choice(k, (h, w), p=prior.probabilities), k, (h * 16, w * 16))
    return grid, prior


def test_interleave_order_is_a_seeded_permutation():
    a = interleave_order(1536, "random", 7)
    assert sorted(a.tolist()) == list(range(1536))
    assert np.array_equal(a, interleave_order(1536, "random", 7))
    assert not np.array_equal(a, interleave_order(1536, "random", 8))
    assert np.array_equal(interleave_order(10, "none", 3), np.arange(10))


@pytest.mark.parametrize("mtu", [200, 576, 1200])
def test_packets_fit_the_mtu_and_round_trip(mtu):
    grid, prior = make_grid()
    packets = packetize(grid, prior, mtu=mtu, seed=3)
    assert all(len(p.to_bytes()) <= mtu for p in packets)
    assert sum(p.tokens for p in packets) == grid.indices.size
    d = Depacketizer(lambda k: prior)
    for p in reversed(packets):
        assert d.add(p.to_bytes()) == "ok"
    out = d.assemble(0, 0)
    assert not out.missing.any()
    assert np.array_equal(out.grid.indices, grid.indices)


def test_max_tokens_limits_packet_size():
    grid, prior = make_grid()
    packets = packetize(grid, prior, max_tokens=64)
    assert len(packets) == 24 and all(p.tokens == 64 for p in packets)


def test_subset_duplicates_and_corruption():
    grid, prior = make_grid()
    packets = packetize(grid, prior, max_tokens=100, seed=11, frame=5, stream=2)
    d = Depacketizer(lambda k: prior)
    kept = packets[::2]
    for p in kept:
        assert d.add(p.to_bytes()) == "ok"
    assert d.add(kept[0].to_bytes()) == "duplicate"
    bad = bytearray(packets[1].to_bytes())
    bad[30] ^= 0xFF
    assert d.add(bytes(bad)) == "corrupt"
    assert d.add(b"garbage") == "corrupt"
    out = d.assemble(2, 5)
    expected_lost = sum(p.tokens for p in packets[1::2])
    assert out.missing.sum() == expected_lost
    assert np.array_equal(out.grid.indices[~out.missing], grid.indices[~out.missing])
    assert d.stats.accepted == len(kept) and d.stats.duplicate == 1 and d.stats.corrupt == 2


def test_interleaving_scatters_a_burst():
    grid, prior = make_grid()
    packets = packetize(grid, prior, max_tokens=64, seed=1)
    d = Depacketizer(lambda k: prior)
    for p in packets[:10] + packets[14:]:  # a burst of 4 lost packets
        d.add(p.to_bytes())
    missing = d.assemble(0, 0).missing
    rows_hit = missing.any(axis=1).sum()
    assert missing.sum() == 256 and rows_hit > 28  # scattered over nearly every row


def test_whole_frame_lost_needs_expected_shape():
    d = Depacketizer(lambda k: Prior.uniform(k))
    with pytest.raises(KeyError):
        d.assemble(0, 9)
    out = d.assemble(0, 9, expected=(256, (40, 50)))
    assert out.missing.all() and out.grid.shape == (3, 4)


def test_header_overhead_is_28_bytes():
    assert OVERHEAD_BYTES == 28


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_never_crash_the_packet_parser(data):
    try:
        parse_packet(data)
    except PacketError:
        pass
    d = Depacketizer(lambda k: Prior.uniform(k))
    assert d.add(data) in ("ok", "corrupt")


def test_a_forged_giant_frame_is_refused_before_any_work():
    import struct
    import zlib

    from codec.packets import MARKER, PacketError, parse_packet

    head = struct.pack("<BBHIHHIHHHH", MARKER, 6 | (1 << 5), 0, 0, 0, 1, 0, 65535, 65535, 0, 1)
    body = head + bytes(4)
    with pytest.raises(PacketError, match="4096-pixel side"):
        parse_packet(body + struct.pack("<I", zlib.crc32(body)))


def _coloured_frame(copies=2, **kwargs):
    from codec import colour

    grid, prior = make_grid()
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (grid.image_size[0], grid.image_size[1], 3)).astype(np.uint8)
    plane = colour.measure(rgb, 64, 2)
    section = colour.to_bytes(plane)
    packets = packetize(grid, prior, max_tokens=64, seed=3, colour=section, colour_copies=copies, **kwargs)
    return grid, prior, plane, section, packets


@pytest.mark.parametrize("copies", [1, 2, 3])
def test_the_colour_section_rides_in_spread_copies_and_round_trips(copies):
    from codec.packets import Session, parse_compact

    grid, prior, plane, section, packets = _coloured_frame(copies, mtu=400)
    carriers = [p.index for p in packets if p.colour]
    assert len(carriers) == copies and all(p.colour == section for p in packets if p.colour)
    if copies > 1:  # spread: no two copies in neighbouring packets (one burst, both lost)
        assert min(np.diff(carriers)) >= len(packets) // copies
    assert all(len(p.to_bytes()) <= 400 for p in packets)
    session = Session(0, grid.level, grid.image_size, "random", 3)
    for form in ("full", "compact"):
        for i in carriers:
            d = Depacketizer(lambda k: prior)
            data = packets[i].to_bytes() if form == "full" else packets[i].to_compact()
            back = parse_packet(data) if form == "full" else parse_compact(data, session, 0, i, len(packets))
            assert back.colour == section and back.payload == packets[i].payload
            assert d.add_packet(back) == "ok" and d.chroma(0, 0) == plane
    d = Depacketizer(lambda k: prior)
    for p in packets:
        if not p.colour:
            d.add(p.to_bytes())
    assert d.chroma(0, 0) is None  # every copy lost: the frame decodes without it
    assert d.assemble(0, 0).missing.sum() == sum(packets[i].tokens for i in carriers)


def test_packets_without_colour_are_unchanged_bytes():
    grid, prior = make_grid()
    plain = packetize(grid, prior, max_tokens=64, seed=3)
    assert all(p.to_bytes()[1] & 0x80 == 0 for p in plain)
    assert parse_packet(plain[0].to_bytes()).colour == b""


def test_a_broken_colour_section_makes_the_packet_corrupt_never_an_exception():
    from codec.packets import Session, parse_compact

    grid, prior, plane, section, packets = _coloured_frame(1)
    session = Session(0, grid.level, grid.image_size, "random", 3)
    compact = bytearray(packets[0].to_compact())
    compact[4 + 5] ^= 0x55  # inside the section's coded values (compact packets carry no CRC)
    d = Depacketizer(lambda k: prior)
    try:
        status = d.add_packet(parse_compact(bytes(compact), session, 0, 0, len(packets)))
    except PacketError:
        status = "corrupt"
    assert status in ("corrupt", "ok")
    if status == "ok":  # it may still decode, to other values: the transport's checksum guards it
        assert d.chroma(0, 0) is not None
    compact[4 + 1: 4 + 3] = (5000).to_bytes(2, "little")  # the section's length
    with pytest.raises(PacketError, match="colour section"):
        parse_compact(bytes(compact), session, 0, 0, len(packets))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=120))
def test_random_compact_packets_with_the_colour_bit_never_crash(data):
    from codec.packets import Session, parse_compact

    session = Session(0, 64, (96, 160), "random", 3)
    d = Depacketizer(lambda k: Prior.uniform(k))
    body = data[:2] + bytes([data[2] if len(data) > 2 else 0, 0x80 | (data[3] if len(data) > 3 else 0)]) + data[4:]
    try:
        d.add_packet(parse_compact(body, session, 0, 0, 4))
    except PacketError:
        pass


def test_a_colour_section_too_large_for_the_mtu_is_one_clear_error():
    grid, prior = make_grid()
    with pytest.raises(PacketError, match="colour section .* leaves no room"):
        packetize(grid, prior, mtu=300, colour=bytes(296))


def _coarse_frame(tiny_codec):
    from codec.packets import coarse_seed

    rng = np.random.default_rng(4)
    grid = TokenGrid(rng.integers(0, 64, (6, 9)), 64, (96, 144))
    fine = tiny_codec.packetize(grid, max_tokens=8, seed=5)
    coarse = tiny_codec.coarse_packets(grid, 16, seed=5, max_tokens=16)
    assert all(p.coarse and p.level == 16 and p.seed == coarse_seed(5) for p in coarse)
    assert not any(p.coarse for p in fine)
    return grid, fine, coarse


@pytest.mark.parametrize("form", ["full", "compact"])
def test_the_coarse_layer_brings_back_each_tokens_cell_beside_the_lost_tokens(tiny_codec, form):
    from codec.packets import Session, parse_compact

    grid, fine, coarse = _coarse_frame(tiny_codec)
    cells = tiny_codec.cell_map(16)[grid.indices]
    session = Session(0, 64, grid.image_size, "random", 5, coarse=16)
    sent = fine + coarse
    d = Depacketizer(tiny_codec.prior)
    lost_fine, lost_coarse = {1, 3}, {0}
    for j, p in enumerate(sent):
        if (p.coarse and p.index in lost_coarse) or (not p.coarse and p.index in lost_fine):
            continue
        if form == "full":
            assert d.add(p.to_bytes()) == "ok"
        else:  # the transport numbers the frame's packets, both layers, as the FEC shim does
            assert d.add_packet(parse_compact(p.to_compact(), session, 0, j, len(sent))) == "ok"
    lossy = d.assemble(0, 0)
    assert lossy.missing.sum() == sum(fine[i].tokens for i in lost_fine)
    assert np.array_equal(lossy.grid.indices[~lossy.missing], grid.indices[~lossy.missing])
    level, got = d.cells(0, 0)
    assert level == 16 and (got == -1).sum() == coarse[0].tokens
    assert np.array_equal(got[got >= 0], cells[got >= 0])
    assert np.array_equal(d.cells_at(0, 0, 16, grid.shape), got)
    assert (d.cells_at(0, 0, 64, grid.shape) == -1).all()  # another level's layer is not this stream's
    assert (d.cells_at(0, 1, 16, grid.shape) == -1).all()  # a frame of which no coarse packet arrived
    d.forget(0, 0)
    assert d.cells(0, 0) is None and 0 not in {key[1] for key in d.frames}


def test_a_coarse_packet_in_a_stream_without_a_coarse_layer_is_refused(tiny_codec):
    from codec.packets import Session, parse_compact

    grid, fine, coarse = _coarse_frame(tiny_codec)
    session = Session(0, 64, grid.image_size, "random", 5)
    with pytest.raises(PacketError, match="no coarse layer"):
        parse_compact(coarse[0].to_compact(), session, 0, 0, len(coarse))
    assert parse_packet(fine[0].to_bytes()).coarse is False
    assert parse_packet(coarse[0].to_bytes()).coarse is True


def test_the_coarse_layer_needs_the_base_level_and_a_smaller_one(tiny_codec):
    grid = TokenGrid(np.zeros((2, 2), int), 16, (32, 32))
    with pytest.raises(ValueError, match="base level 64"):
        tiny_codec.cells(grid, 16)
    with pytest.raises(ValueError, match="smaller levels"):
        tiny_codec.cells(TokenGrid(np.zeros((2, 2), int), 64, (32, 32)), 32)
    with pytest.raises(ValueError, match="colour section rides"):
        packetize(grid, Prior.uniform(16), colour=b"xx", coarse=True)
