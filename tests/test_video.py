"""Video: clips read frame by frame (PyAV), temporal token coding (I- and P-frames, the rate knob,
refresh), P-frame packets, and a receiver that knows which of its tokens are lost or stale."""

import io
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from codec.entropy import Prior
from codec.packets import UPDATE_BYTES, COMPACT_UPDATE_BYTES, Session, packetize_update, parse_compact, parse_packet
from codec.temporal import Refresh, choose_update, decode_update, encode_update, quantise_probability
from codec.tokens import FrameHistory, LossyTokenGrid, TokenGrid
from codec.video import VideoError, builtin_clip, clip_info, read_frames
from recovery import get_method
from simnet.stream import Framing, FrameStatus, StreamReceiver, StreamSender, make_codec
from simnet.stream.reassembly import Depacketizer


def write_clip(path, frames=6, size=(32, 48), codec="libx264", fmt=None):
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=10)
        s.height, s.width, s.pix_fmt = *size, "yuv420p"
        for _ in range(frames):
            picture = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def test_a_clip_is_read_frame_by_frame_and_a_broken_one_is_named(tmp_path):
    clip = write_clip(tmp_path / "c.mp4")
    frames = list(read_frames(clip))
    assert len(frames) == 6 and all(f.shape == (32, 48, 3) and f.dtype == np.uint8 for f in frames)
    assert len(list(read_frames(clip, 2))) == 2
    assert clip_info(clip)["width"] == 48
    for name, data in (("empty.mp4", b""), ("junk.mp4", b"\x00" * 500), ("text.webm", b"hello world")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(VideoError, match=name):
            list(read_frames(tmp_path / name))
    with pytest.raises(VideoError, match="no such video file"):
        list(read_frames(tmp_path / "absent.mp4"))
    # a file cut short: the frames before the cut, or one line saying none could be read
    data = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 2 // 3])
    try:
        assert len(list(read_frames(tmp_path / "cut.mp4"))) <= 6
    except VideoError as e:
        assert "cut.mp4" in str(e)


def test_a_folder_of_frames_and_y4m_are_clips_too(tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), i * 40, np.uint8)).save(folder / f"{i:03d}.png")
    assert [int(f[0, 0, 0]) for f in read_frames(folder)] == [0, 40, 80]
    y4m = write_clip(tmp_path / "c.y4m", codec="rawvideo", fmt="yuv4mpegpipe")
    assert len(list(read_frames(y4m))) == 6


def test_the_builtin_clips_ship_inside_a_dependency():
    path = builtin_clip("carphone")
    first = next(read_frames(path))
    assert first.shape == (144, 176, 3)
    with pytest.raises(VideoError, match="no builtin clip"):
        builtin_clip("nope")


@given(st.lists(st.booleans(), min_size=0, max_size=300), st.integers(0, 2**31), st.floats(0.001, 0.999))
@settings(max_examples=60, deadline=None)
def test_update_payloads_round_trip(flags, seed, p):
    prior = Prior(np.random.default_rng(seed).integers(0, 50, 64))
    flags = np.array(flags, dtype=bool)
    indices = np.random.default_rng(seed).integers(0, 64, int(flags.sum()))
    q = quantise_probability(p)
    data = encode_update(flags, indices, q, prior)
    got_flags, got = decode_update(data, flags.size, q, prior)
    assert np.array_equal(got_flags, flags) and np.array_equal(got, indices)


def test_the_rate_knob_keeps_tokens_unless_the_new_code_is_clearly_better():
    from codec.levels import Level

    rng = np.random.default_rng(1)
    codebook = torch.from_numpy(rng.normal(size=(16, 4))).float()
    level = Level(16, codebook, np.arange(16), Prior(np.ones(16)))
    latent = torch.from_numpy(rng.normal(size=(4, 5, 6))).float()
    reference = rng.integers(0, 16, (5, 6))
    every, changed = choose_update(latent, reference, level, 0.0)
    assert np.array_equal(every, level.assign(latent.permute(1, 2, 0).reshape(-1, 4)).numpy().reshape(5, 6))
    assert np.array_equal(changed, every != reference)
    kept, none = choose_update(latent, reference, level, 1e6)
    assert not none.any() and np.array_equal(kept, reference)
    some, fewer = choose_update(latent, reference, level, 0.5)
    assert fewer.sum() <= changed.sum() and np.array_equal(some[~fewer], reference[~fewer])
    forced = np.zeros((5, 6), bool)
    forced[:, 0] = True
    _, with_band = choose_update(latent, reference, level, 1e6, forced)
    assert np.array_equal(with_band, forced)


@given(st.sampled_from(["periodic", "rolling"]), st.integers(1, 12), st.integers(1, 40))
@settings(max_examples=60, deadline=None)
def test_a_refresh_sends_every_position_within_its_period(mode, period, width):
    refresh = Refresh(mode, period)
    start = 1 + period * 3
    covered = np.zeros((2, width), bool)
    for frame in range(start, start + period):
        covered |= True if refresh.intra(frame) else refresh.forced(frame, (2, width))
    assert covered.all()
    assert refresh.intra(0) and not Refresh("none").intra(5)
    with pytest.raises(ValueError):
        Refresh("sometimes", 3)


@pytest.mark.parametrize("compact", [False, True])
def test_p_frame_packets_round_trip_and_say_what_they_update(compact):
    rng = np.random.default_rng(2)
    prior = Prior(rng.integers(0, 50, 64))
    grid = TokenGrid(rng.integers(0, 64, (6, 9)), 64, (96, 144))
    changed = rng.random((6, 9)) < 0.3
    overhead = (4 + COMPACT_UPDATE_BYTES) if compact else (28 + UPDATE_BYTES)
    packets = packetize_update(grid, changed, 6, prior, frame=7, mtu=60, max_tokens=4, seed=9, overhead=overhead)
    assert len(packets) >= int(changed.sum()) // 4 and all(p.update and p.reference == 6 for p in packets)
    depack = Depacketizer(lambda k: prior)
    session = Session(0, 64, (96, 144), "random", (9 - 7) % 2**32)
    for p in packets:
        data = p.to_compact() if compact else p.to_bytes()
        assert len(data) <= 60
        parsed = parse_compact(data, session, 7, p.index, p.count) if compact else parse_packet(data)
        assert parsed.reference == 6 and parsed.change == p.change
        assert depack.add_packet(parsed) == "ok"
    lossy = depack.assemble(0, 7)
    reference, got = depack.update(0, 7)
    assert reference == 6 and np.array_equal(got, changed) and not lossy.missing.any()
    assert np.array_equal(lossy.grid.indices[changed], grid.indices[changed])


def _stream(tiny_codec, refresh, threshold=0.0):
    codec = make_codec("vq", image_codec=tiny_codec, level=64, mtu=200, max_tokens=3,
                       refresh=refresh, threshold=threshold)
    sender = StreamSender(codec)
    return codec, sender, StreamReceiver(codec)


def _moving(i, size=(48, 64)):
    base = np.random.default_rng(0).integers(0, 256, (size[0], size[1] + 40, 3), dtype=np.uint8)
    return np.ascontiguousarray(base[:, i * 4: i * 4 + size[1]])


def test_a_lost_p_frame_packet_leaves_stale_tokens_until_the_refresh(tiny_codec):
    codec, sender, receiver = _stream(tiny_codec, Refresh("periodic", 4))
    method = get_method("previous")
    kinds, stale, lost = [], [], []
    for i in range(6):
        frame, wire = sender.send(i, _moving(i))
        kinds.append(frame.frame_type)
        drop = {0} if i == 1 and len(wire.packets) > 1 else set()
        for j, data in enumerate(wire.packets):
            if j not in drop:
                receiver.put_wire(data)
        shown = receiver.decode(receiver.take(i), method)
        lost.append(int(shown.lost.sum()))
        stale.append(int(shown.stale.sum()) if shown.stale is not None else 0)
        if i in (0, 4):  # I-frames that arrived whole: exactly what the sender decodes
            assert shown.status is FrameStatus.DECODED and np.array_equal(shown.rgb, codec.lossless(frame))
        if not lost[-1] and not stale[-1]:
            assert np.array_equal(shown.tokens.indices, frame.extra["grid"].indices)
    assert kinds == ["I", "P", "P", "P", "I", "P"]
    assert lost[1] > 0 and sum(lost) == lost[1]
    assert stale[4] == 0 and stale[5] == 0  # the I-frame repaired everything
    # the positions lost in frame 1 that frame 2 did not update stayed guesses
    assert stale[2] > 0 or lost[1] == 0


def test_p_frames_send_fewer_bytes_when_little_changes(tiny_codec):
    codec, sender, _ = _stream(tiny_codec, Refresh("periodic", 30))
    still = _moving(0)
    sizes = [sender.encode(i, still).payload_bytes for i in range(3)]
    assert sizes[1] < sizes[0] / 3 and sizes[2] == sizes[1]


def test_previous_fills_lost_tokens_from_the_last_frame_shown(tiny_codec):
    prev = TokenGrid(np.arange(12).reshape(3, 4), 64, (48, 64))
    missing = np.zeros((3, 4), bool)
    missing[1, 2] = missing[0, 0] = True
    lossy = LossyTokenGrid(TokenGrid(np.full((3, 4), 50), 64, (48, 64)), missing)
    cb = tiny_codec.codebook(64)
    out = get_method("previous").recover(lossy, cb, FrameHistory((prev,)))
    assert out[1, 2] == 6 and out[0, 0] == 0 and (out[~missing] == 50).all()
    # no previous frame: the spatial neighbour fill
    alone = get_method("previous").recover(lossy, cb)
    assert np.array_equal(alone, get_method("neighbour").recover(lossy, cb))


def test_a_temporal_transformer_starts_as_its_spatial_model_plus_a_copy_score_and_reads_the_previous_frame():
    from recovery.transformer import COPY_PRIOR, MaskedTokenTransformer, TransformerConfig

    torch.manual_seed(0)
    cfg = TransformerConfig(levels=(16,), n_layer=1, n_head=2, n_embd=16, max_side=8)
    spatial = MaskedTokenTransformer(cfg)
    temporal = MaskedTokenTransformer(TransformerConfig(**{**cfg.__dict__, "temporal": True}))
    temporal.load_state_dict(spatial.state_dict(), strict=False)
    idx = torch.randint(0, 16, (1, 4, 4))
    miss = torch.rand(1, 4, 4) < 0.3
    prev = torch.randint(0, 16, (1, 4, 4))
    with torch.no_grad():
        raised = temporal(idx, miss, 16, previous=prev) - spatial(idx, miss, 16)
    copied = torch.nn.functional.one_hot(prev, 16).bool()
    assert torch.allclose(raised[copied], torch.full_like(raised[copied], COPY_PRIOR), atol=1e-5)
    assert raised[~copied].abs().max() < 1e-5
    at = miss.clone()
    assert torch.allclose(temporal(idx, miss, 16, at=at, previous=prev), temporal(idx, miss, 16, previous=prev)[at])
    torch.nn.init.normal_(temporal.prev_in.weight)
    assert not torch.allclose(temporal(idx, miss, 16, previous=prev), temporal(idx, miss, 16, previous=(prev + 1) % 16))
    with pytest.raises(ValueError, match="not temporal"):
        spatial(idx, miss, 16, previous=prev)


def test_a_broken_clip_in_a_scenario_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    (tmp_path / "s.yaml").write_text("name: v\nsource: {video: bad.mp4, frames: 3, size: [32, 32]}\n"
                                     "codec: {level: 64, temporal: {refresh: rolling, period: 4}}\n")
    r = subprocess.run([sys.executable, "-m", "simnet.cli", "run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "bad.mp4" in errors[0] and "source.video" in errors[0] and "Traceback" not in r.stderr


def test_a_clip_encodes_to_vqv_and_decodes_to_what_the_stream_decodes(tmp_path, capsys, tiny_weights, tiny_codec):
    from codec.images import load_rgb
    from simnet.cli import main

    clip = write_clip(tmp_path / "c.mp4", frames=5, size=(32, 48))
    w = ["--weights", str(tiny_weights)]
    assert main(["encode", str(clip), str(tmp_path / "c.vqv"), "-k", "64", "--period", "3", "--threshold", "0.5"] + w) == 0
    assert "2 I / 3 P" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "c.vqv"), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"p_frames": 3' in out and '"frames": 5' in out
    assert main(["decode", str(tmp_path / "c.vqv"), str(tmp_path / "frames")] + w) == 0
    capsys.readouterr()
    shown = [load_rgb(tmp_path / "frames" / f"{i:05d}.png") for i in range(5)]
    codec = make_codec("vq", image_codec=tiny_codec, level=64, refresh=Refresh("periodic", 3), threshold=0.5)
    for i, rgb in enumerate(read_frames(clip)):
        assert np.array_equal(shown[i], codec.lossless(codec.encode(i, rgb)))
    data = (tmp_path / "c.vqv").read_bytes()
    (tmp_path / "cut.vqv").write_bytes(data[:-7])
    assert main(["decode", str(tmp_path / "cut.vqv"), str(tmp_path / "o")] + w) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.vqv" in err[0] and "truncated" in err[0]


def test_the_temporal_recovery_reads_the_history_it_is_handed():
    from recovery.transformer import MaskedTokenTransformer, TransformerConfig
    from recovery.transformer_recovery import TransformerRecovery

    torch.manual_seed(1)
    model = MaskedTokenTransformer(TransformerConfig(levels=(16,), n_layer=1, n_head=2, n_embd=16, max_side=8,
                                                     temporal=True))
    torch.nn.init.normal_(model.prev_in.weight, std=2.0)
    method = TransformerRecovery(model, decision="argmax", precision="fp32", window=None)
    rng = np.random.default_rng(3)
    missing = rng.random((6, 6)) < 0.4
    lossy = LossyTokenGrid(TokenGrid(rng.integers(0, 16, (6, 6)), 16, (96, 96)), missing)
    cb = torch.randn(16, 4)
    alone = method.recover(lossy, cb)
    histories = [FrameHistory((TokenGrid(np.full((6, 6), v), 16, (96, 96)),)) for v in (0, 9)]
    with_previous = [method.recover(lossy, cb, h) for h in histories]
    assert not np.array_equal(with_previous[0], with_previous[1]) or not np.array_equal(with_previous[0], alone)
    assert all(np.array_equal(r[~missing], lossy.grid.indices[~missing]) for r in with_previous)
    # no previous frame, or one of another shape (not this stream's): the neighbour fill
    other = FrameHistory((TokenGrid(np.zeros((5, 6), np.int64), 16, (80, 96)),))
    assert np.array_equal(method.recover(lossy, cb, other), alone)
    assert np.array_equal(alone, get_method("neighbour").recover(lossy, cb))
    # a frame lost beyond what training masked (a whole frame): the previous frame's tokens
    gone = LossyTokenGrid(lossy.grid, np.ones((6, 6), bool))
    assert np.array_equal(method.recover(gone, cb, histories[1]), np.full((6, 6), 9))


def test_a_scenario_streams_a_clip_at_its_own_size_and_drops_frames_to_its_rate(tmp_path):
    from simnet.experiment.frames import frames
    from simnet.experiment.scenario import load_scenario

    clip = write_clip(tmp_path / "c.mp4", frames=6, size=(32, 48))  # 10 fps
    (tmp_path / "s.yaml").write_text("name: v\nsource: {video: c.mp4, frames: 10, fps: 5}\n")
    got = list(frames(load_scenario(tmp_path / "s.yaml")))
    every = list(read_frames(clip))
    assert [name for name, _ in got] == ["frame00000", "frame00001", "frame00002"]
    assert all(np.array_equal(rgb, every[2 * i]) for i, (_, rgb) in enumerate(got))
    (tmp_path / "t.yaml").write_text("name: v\nsource: {video: c.mp4, count: 2, fps: 10, size: [16, 16]}\n")
    assert [rgb.shape for _, rgb in frames(load_scenario(tmp_path / "t.yaml"))] == [(16, 16, 3)] * 2
