"""Classical protection: Reed-Solomon and XOR parity, NACK over a lossy reverse path, compact
packets, the AVIF container, and the equal-bandwidth accounting of a comparison."""

import itertools
import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simnet.cli import main
from simnet.network.config import ChannelConfig
from simnet.network.protected import ProtectedFrame, ProtectionOptions, simulate_protected
from simnet.network.protection import (ProtectionError, adaptive_parity, groups, parse_shim, parity_count,
                                       protect, recover)


def _packets(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(1, 300)) for _ in range(n)]


def _received(sources, parities, lost):
    n = len(sources)
    got_s = {i: parse_shim(p)[1] for i, p in enumerate(sources) if i not in lost}
    got_p = {j: parse_shim(p)[1] for j, p in enumerate(parities) if n + j not in lost}
    return got_s, got_p


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**31), st.data())
def test_reed_solomon_recovers_any_k_of_n_and_fails_cleanly_with_fewer(k, m, seed, data):
    packets = _packets(seed, k)
    sources, parities = protect(packets, 7, "rs", m / k)
    assert len(parities) == m
    n = k + m
    lost = set(data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n)))
    got = recover("rs", k, m, *_received(sources, parities, lost))
    if len(lost) <= m:
        assert got == dict(enumerate(packets))  # any k of the n rebuild every source exactly
    else:
        assert got == {i: packets[i] for i in range(k) if i not in lost}  # only what arrived


def test_xor_rows_recover_one_loss_per_row_and_not_two():
    packets = _packets(3, 9)
    sources, parities = protect(packets, 0, "xor_rows", 1 / 3)
    rows = groups("xor_rows", 9, 3)
    assert rows == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    for lost in itertools.product(*rows):  # one per row: all rebuilt
        assert recover("xor_rows", 9, 3, *_received(sources, parities, set(lost))) == dict(enumerate(packets))
    got = recover("xor_rows", 9, 3, *_received(sources, parities, {0, 1}))
    assert 0 not in got and 1 not in got and len(got) == 7


def test_xor_grid_recovers_any_two_losses():
    packets = _packets(4, 9)
    sources, parities = protect(packets, 0, "xor_grid")
    assert len(parities) == parity_count("xor_grid", 9, 0) == 6
    for lost in itertools.combinations(range(9), 2):
        assert recover("xor_grid", 9, 6, *_received(sources, parities, set(lost))) == dict(enumerate(packets))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_shim_parser_never_raises_anything_but_its_error(data):
    try:
        shim, body = parse_shim(data)
    except ProtectionError:
        return
    assert shim.sources >= 1 and len(body) == len(data) - 6


def test_adaptive_parity_grows_with_the_reported_loss():
    assert adaptive_parity(8, 0.0) == 0
    assert adaptive_parity(8, 0.05) < adaptive_parity(8, 0.2) < adaptive_parity(8, 0.4)


def _stream(frames=40, packets=8, size=60):
    out = []
    for i in range(frames):
        sources, parities = protect(_packets(i, packets), i, "none", 0)
        out.append(ProtectedFrame(sources, parities, retransmit_budget=10**6))
    return out


def _channel(rtt, rate=0.2):
    return ChannelConfig.model_validate({"bandwidth": "2 Mbit/s", "delay": {"base": f"{rtt * 500} ms", "jitter": "1 ms"},
                                         "loss": {"model": "bernoulli", "rate": rate}})


@pytest.mark.parametrize("rtt", [0.02, 0.1, 0.2])
def test_nack_never_retransmits_past_the_deadline(rtt):
    trace = []
    deadline = 0.15
    results, stats = simulate_protected(_channel(rtt), _stream(), 10, deadline, 0.2, 1,
                                        ProtectionOptions(nack=True, reverse_delay=rtt / 2), trace=trace)
    for frame, index, sent, arrives in trace:
        assert arrives <= frame / 10 + deadline + 1e-12
    if rtt >= 0.2:  # a round trip longer than the deadline: nothing can be resent in time
        assert stats["retransmissions"] == 0
    else:
        assert stats["retransmissions"] > 0


def test_nack_repairs_losses_and_its_reverse_path_loses_some_nacks():
    plain, _ = simulate_protected(_channel(0.02), _stream(), 10, 0.15, 0.2, 2, ProtectionOptions())
    fixed, stats = simulate_protected(_channel(0.02), _stream(), 10, 0.15, 0.2, 2,
                                      ProtectionOptions(nack=True, reverse_delay=0.01))
    lossy_back, back = simulate_protected(_channel(0.02), _stream(), 10, 0.15, 0.2, 2,
                                          ProtectionOptions(nack=True, reverse_delay=0.01, reverse_loss=0.5))
    residual = lambda rs: np.mean([r.residual_loss for r in rs])  # noqa: E731
    assert residual(plain) > 0.1
    assert residual(fixed) < 0.02
    assert back["nacks_lost"] > 0 and stats["nacks_lost"] == 0
    assert residual(fixed) <= residual(lossy_back)


def test_retransmissions_stay_within_the_frames_reserve():
    frames = _stream()
    for f in frames:
        f.retransmit_budget = 60  # room for one resend per frame, on average
    trace = []
    results, stats = simulate_protected(_channel(0.02, 0.3), frames, 10, 0.15, 0.3, 3,
                                        ProtectionOptions(nack=True, reverse_delay=0.01), trace=trace)
    spent = 0
    for frame, index, sent, _ in trace:  # at every moment, within the reserve of the frames sent so far
        spent += len(frames[frame].sources[index])
        assert spent <= 60 * (int(sent * 10 + 1e-9) + 1)
    assert spent == sum(r.bytes_retransmitted for r in results) > 0
    assert spent <= sum(f.retransmit_budget for f in frames)


def test_compact_packets_round_trip(tiny_codec, sample_rgb):
    from codec.packets import COMPACT_OVERHEAD_BYTES, Session, parse_compact

    grid = tiny_codec.encode(sample_rgb, 64)
    packets = tiny_codec.packetize(grid, frame=5, mtu=60, seed=11, overhead=COMPACT_OVERHEAD_BYTES + 6)
    session = Session(0, 64, grid.image_size, "random", 6)  # frame 5's seed is 6 + 5
    for p in packets:
        data = p.to_compact()
        assert len(data) + 6 <= 60 and len(p.to_bytes()) - len(data) == 24
        assert parse_compact(data, session, 5, p.index, p.count) == p


def test_avif_container_is_rebuilt_from_the_sessions_template():
    from PIL import Image
    import io

    from codec.classical import join_avif, split_avif

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    files = []
    for q in (0, 30, 80):
        buf = io.BytesIO()
        img.save(buf, format="AVIF", quality=q, speed=8)
        files.append(buf.getvalue())
    template = split_avif(files[0])[0]
    for data in files:
        container, payload = split_avif(data)
        assert join_avif(template, payload) == data and len(container) > 200


def _comparison_text(weights) -> str:
    return f"""
name: cmp
source: {{images: builtin, count: 2, size: [64, 96], fps: 10}}
codec: {{level: 64, precision: fp32, weights: {weights}}}
packets: {{mtu: 1200 B, max_tokens: 4, interleave: random, seed: 1}}
channel: {{bandwidth: 2 Mbit/s, delay: {{jitter: 1 ms}}}}
receiver: {{deadline: 150 ms}}
comparison:
  budget: 300 B
  rtt: [20 ms]
  loss_models: [{{model: gilbert_elliott, burst: 2}}]
  methods:
    - {{name: vq+neighbour, recovery: neighbour}}
    - {{name: vq+fec, recovery: neighbour, fec: rs, parity: 0.5}}
    - {{name: vq+xor, recovery: none, fec: xor_grid}}
    - {{name: vq+full, recovery: none, header: full}}
    - {{name: vq+nack, recovery: neighbour, nack: true}}
    - {{name: vq+hybrid, recovery: neighbour, fec: rs, parity: adaptive, nack: auto}}
    - {{name: webp+fec, codec: webp, downscale: 2, fec: rs, parity: 1.0}}
    - {{name: avif+nack, codec: avif, nack: true}}
    - {{name: vq+colour, recovery: neighbour, chroma: 32, colour_copies: 2}}
    - {{name: vq+coarse, recovery: neighbour, coarse: 16}}
sweep: {{loss_rate: [0, 0.3], seeds: 2}}
"""


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, tiny_weights):
    folder = tmp_path_factory.mktemp("cmp")
    (folder / "cmp.yaml").write_text(_comparison_text(tiny_weights))
    assert main(["run", str(folder / "cmp.yaml"), "--out", str(folder)]) == 0
    return folder


def test_equal_bandwidth_accounting_holds_for_every_method(comparison):
    doc = json.loads((comparison / "cmp.json").read_text())
    records = doc["records"]
    assert {r["method"] for r in records} == {"vq+neighbour", "vq+fec", "vq+xor", "vq+full", "vq+nack", "vq+hybrid",
                                              "webp+fec", "avif+nack", "vq+colour", "vq+coarse"}
    for r in records:
        parts = r["bits_source"] + r["bits_parity"] + r["bits_retransmitted"] + r["bits_header"]
        assert parts == r["bits_wire"] and (r["bits_wire"] > 0 or r["choice"] == "skipped")
    for run in doc["runs"]:  # the stream's total within its frames' budgets, up to one packet
        assert run["over_budget_bits"] <= run["largest_packet_bits"], run
    by = {r["method"]: r for r in records if r["loss_rate_target"] == 0}
    assert by["vq+fec"]["bits_parity"] > 0 and by["vq+neighbour"]["bits_parity"] == 0
    assert by["vq+xor"]["bits_parity"] > 0
    assert by["vq+full"]["bits_header"] > by["vq+neighbour"]["bits_header"]  # 28 bytes a packet, not 4
    # the colour section travels in the source packets: more source bits at the same level
    if by["vq+colour"]["choice"] == by["vq+neighbour"]["choice"]:
        assert by["vq+colour"]["bits_source"] > by["vq+neighbour"]["bits_source"]
    # the coarse layer travels as more source packets, at the base level only
    assert by["vq+coarse"]["choice"] == "K=64+16" and by["vq+neighbour"]["choice"] == "K=64"
    assert by["vq+coarse"]["bits_source"] > by["vq+neighbour"]["bits_source"]
    lossy = [r for r in records if r["loss_rate_target"] == 0.3]
    assert any(r["bits_retransmitted"] > 0 for r in lossy if r["method"] == "vq+nack")
    assert all(r["decoded"] for r in records if r["codec"] == "vq" and r["loss_rate_target"] == 0
               and r["choice"] != "skipped")


def test_comparison_report_states_the_answer(comparison):
    doc = json.loads((comparison / "cmp.json").read_text())
    answer = doc["comparison"]["answer"][0]
    assert answer.startswith("At equal bandwidth") and "lossy points" in answer
    rows = doc["comparison"]["summary"]
    assert {"frames_decoded", "residual_loss", "frame_latency_ms_p95", "psnr_min", "psnr_max"} <= set(rows[0])
    assert (comparison / "cmp.pdf").stat().st_size > 20_000


def test_a_frame_that_cannot_be_decoded_shows_the_last_one(comparison):
    doc = json.loads((comparison / "cmp.json").read_text())
    undecoded = [r for r in doc["records"] if r["codec"] != "vq" and not r["decoded"]]
    for r in undecoded:
        assert r["residual_loss"] > 0


@pytest.mark.parametrize("method, message", [
    ("{name: a, codec: avif, recovery: neighbour}", "recovery is for vq"),
    ("{name: a, fec: rs}", "needs parity"),
    ("{name: a, parity: adaptive, fec: xor_rows}", "adaptive"),
    ("{name: a, codec: vq, downscale: 2}", "downscale"),
    ("{name: a, codec: avif, chroma: 64}", "codes colour itself"),
    ("{name: a, chroma: 48}", "chroma"),
    ("{name: a, luma: true}", "set chroma"),
    ("{name: a, codec: webp, coarse: 16}", "has no tokens"),
    ("{name: a, coarse: 32}", "coarse"),
])
def test_bad_comparison_methods_are_one_line(tmp_path, tiny_weights, capsys, method, message):
    text = _comparison_text(tiny_weights).split("  methods:")[0] + f"  methods:\n    - {method}\n"
    (tmp_path / "bad.yaml").write_text(text)
    assert main(["run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.yaml" in err and message in err


def test_report_re_renders_a_comparison(comparison, tmp_path):
    assert main(["report", str(comparison / "cmp.json"), "--out", str(tmp_path / "again.pdf")]) == 0
    assert (tmp_path / "again.pdf").stat().st_size > 20_000


def test_the_answer_knows_which_way_each_metric_is_better():
    from simnet.experiment.compare import answer

    def row(method, protected, value):
        return {"method": method, "protected": protected, "codec": "vq", "loss_model": "bernoulli", "rtt_ms": 20.0,
                "loss_rate_target": 0.2, "ciede2000": value, "psnr": value, "frame_latency_ms_p95": 20.0}

    rows = [row("vq+transformer", False, 10.0), row("vq+fec", True, 12.0)]
    assert "at 1 of 1 lossy points" in answer(rows, "ciede2000")  # lower CIEDE2000 wins
    assert "at 0 of 1 lossy points" in answer(rows, "psnr")  # the same numbers, higher PSNR wins


@pytest.mark.parametrize("budget, message", [("lots", "expected 'reference' or a size"), ("-3 B", "positive size")])
def test_a_bad_budget_is_one_line(tmp_path, tiny_weights, capsys, budget, message):
    (tmp_path / "bad.yaml").write_text(_comparison_text(tiny_weights).replace("budget: 300 B", f"budget: {budget}"))
    assert main(["run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "comparison.budget" in err and message in err


def test_budget_scale_widens_every_frames_budget_and_the_coarse_layer_needs_the_base_level(
        tmp_path, tiny_weights, capsys):
    head = _comparison_text(tiny_weights).split("  methods:")[0].replace("budget: 300 B", "budget: reference")
    sweep = "sweep: {loss_rate: [0.3], seeds: 1}\n"
    docs = {}
    for name, scale in (("one", ""), ("wide", "  budget_scale: 1.5\n")):
        text = head + scale + "  methods:\n    - {name: vq+coarse, recovery: neighbour, coarse: 16}\n" + sweep
        (tmp_path / f"{name}.yaml").write_text(text.replace("name: cmp", f"name: {name}"))
        assert main(["run", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path), "--no-pdf"]) == 0
        docs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    one, wide = (docs[k]["run_info"]["budget_bytes_per_frame"] for k in ("one", "wide"))
    assert wide == [int(b * 1.5) for b in one]
    # the reference frame alone fills the budget: the layer fits only in the wider one
    assert {r["choice"] for r in docs["one"]["records"]} & {"K=64+16"} == set()
    assert {r["choice"] for r in docs["wide"]["records"]} == {"K=64+16"}
    text = (head + "  methods:\n    - {name: vq+coarse, recovery: neighbour, coarse: 16}\n" + sweep)
    (tmp_path / "k16.yaml").write_text(text.replace("level: 64", "level: 16"))
    capsys.readouterr()
    assert main(["run", str(tmp_path / "k16.yaml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "comparison method vq+coarse: coarse: the coarse layer needs codec.level 64" in err
