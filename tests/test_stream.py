"""The stream: one sender and one receiver for every codec, the frame's status as the receiver
saw it, the history handed to recovery, and memory that stays flat however long the stream."""

import os

import numpy as np
import pytest

from recovery import get_method
from simnet.stream import CoarseLayer, Framing, FrameStatus, StreamReceiver, StreamSender, make_codec


def _rgb(i: int, size=(48, 64)) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (*size, 3), dtype=np.uint8)


@pytest.mark.parametrize("header", ["full", "compact"])
def test_vq_frames_cross_sender_and_receiver_and_say_what_happened(tiny_codec, header):
    codec = make_codec("vq", image_codec=tiny_codec, level=64, mtu=200, max_tokens=2, header=header,
                       framing=6 if header == "compact" else 0)
    sender = StreamSender(codec, framing=Framing(shim=header == "compact"))
    receiver = StreamReceiver(codec, sender.framing)
    method = get_method("neighbour")
    for i, drop in enumerate(([], [0, 3])):
        frame, wire = sender.send(i, _rgb(i))
        receiver.expect(i, codec.signal(frame))
        for j, data in enumerate(wire.packets):
            if j not in drop:
                assert receiver.put_wire(data) == "ok"
        decoded = receiver.decode(receiver.take(i), method)
        if not drop:
            assert decoded.status is FrameStatus.DECODED and decoded.loss_rate == 0
            assert np.array_equal(decoded.rgb, codec.lossless(frame))
        else:
            assert decoded.status is FrameStatus.CONCEALED and 0 < decoded.loss_rate < 1
            kept = ~decoded.lost
            assert np.array_equal(decoded.tokens.indices[kept], frame.extra["grid"].indices[kept])
    assert receiver.put_wire(b"\x00garbage") == "corrupt"


def test_a_file_codec_frame_missing_a_piece_is_undecodable():
    codec = make_codec("webp", piece=60)
    sender = StreamSender(codec, framing=Framing(shim=True))
    frame, wire = sender.send(0, _rgb(0), (1, 80))
    assert len(frame.units) > 2
    receiver = StreamReceiver(codec, sender.framing)
    for first in (1, 0):  # the first piece lost, then nothing lost
        receiver.expect(0, codec.signal(frame))
        for data in wire.packets[first:]:
            receiver.put(*sender.framing.open(data))
        shown = receiver.decode(receiver.take(0))
        if first:
            assert shown.status is FrameStatus.UNDECODABLE and shown.rgb is None
    assert shown.status is FrameStatus.DECODED and shown.rgb.shape == (48, 64, 3)
    assert np.array_equal(shown.rgb, codec.coded(0, _rgb(0), 1, 80)[1])


def test_recovery_is_handed_the_streams_history(tiny_codec):
    seen = []

    class Remembering:
        name, conceal = "remembering", False

        def recover(self, lossy, codebook, history=None):
            seen.append(history)
            return np.where(lossy.missing, 0, lossy.grid.indices)

    codec = make_codec("vq", image_codec=tiny_codec, level=64, mtu=200, max_tokens=2)
    sender, receiver = StreamSender(codec), StreamReceiver(codec, history=2)
    for i in range(4):
        frame, wire = sender.send(i, _rgb(i))
        for data in wire.packets[1:]:  # every frame loses its first packet
            receiver.put_wire(data)
        receiver.decode(receiver.take(i), Remembering())
    assert [len(h.grids) for h in seen] == [0, 1, 2, 2]  # bounded by the window
    assert seen[1].previous.shape == frame.extra["grid"].shape and seen[1].pictures[0].shape == (48, 64, 3)


def test_the_coarse_layer_is_a_stage_only_token_codecs_pass(tiny_codec):
    with pytest.raises(ValueError, match="no tokens"):
        StreamSender(make_codec("avif", piece=400), [CoarseLayer(16)]).send(0, _rgb(0))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="RSS is read from /proc")
def test_a_long_stream_flows_in_flat_memory():
    """Thousands of frames from a source that makes them on demand, sent, lost in part, received
    and decoded: memory after the first few hundred frames stays where it was (a stream that kept
    its frames would grow by 96x128x3 bytes twice a frame, over 200 MB here)."""
    codec = make_codec("jpeg", piece=300)
    sender = StreamSender(codec, framing=Framing(shim=True, fec="rs", parity=0.5))
    receiver = StreamReceiver(codec, sender.framing)
    source = ((f"f{i}", np.full((96, 128, 3), i % 251, dtype=np.uint8)) for i in range(3000))
    marks, shown = {}, 0
    for i, (_, rgb) in enumerate(source):
        frame, wire = sender.send(i, rgb, (1, 90))
        receiver.expect(i, codec.signal(frame))
        for data in wire.sources[:-1] if i % 3 == 0 else wire.sources:
            receiver.put(*sender.framing.open(data))
        decoded = receiver.decode(receiver.take(i))
        shown += decoded.status is FrameStatus.DECODED
        if i in (300, 2999):
            marks[i] = _rss_mb()
    assert shown == 2000
    assert marks[2999] - marks[300] < 20, marks
