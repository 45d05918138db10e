"""Device and precision: bf16 only where the hardware has it natively; large images in tiles."""

import numpy as np
import pytest
import torch

from codec import hardware
from codec.hardware import HardwareError, resolve
from codec.tiling import blend_tiles, tile_spans


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_the_cpu_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve("auto", "auto") == hardware.Compute("cpu", expected)
    assert resolve("cpu", "auto").precision == expected
    # an explicit choice is kept, fast or not
    assert resolve("cpu", "bf16").precision == "bf16" and resolve("cpu", "fp32").precision == "fp32"


def test_codec_and_transformer_default_to_the_rule(monkeypatch, tiny_weights):
    from codec.zoo import load_codec
    from recovery.transformer import MaskedTokenTransformer, TransformerConfig
    from recovery.transformer_recovery import TransformerRecovery

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, expected in ((False, "fp32"), (True, "bf16")):
        monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
        codec = load_codec(tiny_weights)
        assert (codec.device, codec.precision) == ("cpu", expected)
        model = MaskedTokenTransformer(TransformerConfig(levels=(16,), n_layer=1, n_embd=32, max_side=8))
        assert TransformerRecovery(model).precision == expected


def test_cuda_without_a_gpu_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HardwareError, match="no CUDA GPU"):
        resolve("cuda", "auto")
    with pytest.raises(HardwareError, match="precision 'fp16'"):
        resolve("cpu", "fp16")


def test_the_choice_goes_into_the_meta_and_the_first_line(tmp_path, capsys, tiny_weights, monkeypatch):
    import json

    from simnet.cli import main

    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    # a long CPU name: the line stays one line on a pipe (rich would break it at 80 columns)
    monkeypatch.setattr(hardware, "_cpu_name", lambda: "Intel(R) Xeon(R) Platinum 8480+ Processor @ 2.0GHz")
    from test_run_report import scenario_text

    (tmp_path / "s.yaml").write_text(scenario_text(tiny_weights).replace("precision: fp32", "precision: auto"))
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path), "--no-pdf", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("compute: cpu (Intel(R) Xeon(R) Platinum") and "fp32" in first
    assert first.endswith("native bf16 no")
    meta = json.loads((tmp_path / "tiny.json").read_text())["meta"]
    assert meta["precision"] == "fp32" and meta["device"] == "cpu" and meta["cpu_capability"]
    assert meta["cpu_native_bf16"] is False and "--device=cpu" in meta["command"]


@pytest.mark.parametrize("n, size, overlap", [(10, 64, 8), (128, 64, 8), (100, 48, 8), (65, 64, 8), (7, 4, 2)])
def test_tile_spans_cover_with_the_overlap(n, size, overlap):
    spans = tile_spans(n, size, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(e - s <= size for s, e in spans)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert e0 - s1 >= overlap and s1 > s0  # neighbours share at least the overlap


def test_blended_tiles_reproduce_a_function_that_tiles_agree_on():
    h, w, scale = 20, 30, 4
    truth = torch.randn(1, 2, h * scale, w * scale)
    calls = []

    def run(y0, y1, x0, x1):
        calls.append((y0, y1, x0, x1))
        return truth[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale]

    out = blend_tiles(run, h, w, size=8, overlap=2, scale=scale)
    assert len(calls) > 4 and torch.allclose(out, truth, atol=1e-6)


def test_large_grids_go_through_tiles_and_small_ones_do_not(tiny_codec, sample_rgb):
    grid = tiny_codec.encode(sample_rgb, 64)  # 5 x 7 tokens
    whole = tiny_codec.decode(grid)
    saved = tiny_codec.max_tile_tokens, tiny_codec.tile_tokens, tiny_codec.tile_overlap
    try:
        tiny_codec.max_tile_tokens, tiny_codec.tile_tokens, tiny_codec.tile_overlap = 8, 4, 2
        tiled = tiny_codec.decode(grid)
        tiled_grid = tiny_codec.encode(sample_rgb, 64)
    finally:
        tiny_codec.max_tile_tokens, tiny_codec.tile_tokens, tiny_codec.tile_overlap = saved
    assert tiled.shape == whole.shape and tiled_grid.shape == grid.shape
    assert not np.array_equal(tiled, whole)  # it did tile


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_decode_matches_the_cpu(tiny_weights, sample_rgb):
    from codec.metrics import quality
    from codec.zoo import load_codec

    cpu = load_codec(tiny_weights, precision="fp32", device="cpu")
    gpu = load_codec(tiny_weights, precision="fp32", device="cuda")
    grid = cpu.encode(sample_rgb, 64)
    # the same tokens but for near-ties between codes
    assert (gpu.encode(sample_rgb, 64).indices == grid.indices).mean() > 0.95
    assert quality(cpu.decode(grid), gpu.decode(grid))["psnr"] > 45


@pytest.mark.parametrize("forced, expected", [("1", "bf16"), ("0", "fp32")])
def test_the_environment_overrules_the_bf16_detection(monkeypatch, forced, expected):
    """SIMNET_NATIVE_BF16 makes `auto` choose as that kind of CPU would (the suite runs so on any CPU)."""
    monkeypatch.setenv("SIMNET_NATIVE_BF16", forced)
    assert hardware.cpu_has_native_bf16() is (forced == "1")
    assert hardware.resolve("cpu", "auto").precision == expected


def test_a_wrong_bf16_override_is_refused(monkeypatch):
    monkeypatch.setenv("SIMNET_NATIVE_BF16", "yes")
    with pytest.raises(HardwareError, match="SIMNET_NATIVE_BF16='yes'"):
        hardware.resolve("cpu", "auto")
