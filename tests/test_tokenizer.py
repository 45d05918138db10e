import numpy as np
import pytest
import torch
import yaml

from codec.checkpoint import (CheckpointError, load_taming_checkpoint, load_tokenizer,
                              save_tokenizer)
from codec.tokenizer import TokenizerConfig, VQModel, pad_to_multiple

from conftest import TINY, tiny_model

TAMING_KEYS = ["encoder.conv_in.weight", "encoder.down.0.block.0.norm1.weight",
               "encoder.down.0.downsample.conv.weight", "encoder.mid.attn_1.q.weight",
               "encoder.norm_out.weight", "encoder.conv_out.weight", "decoder.conv_in.weight",
               "decoder.mid.block_1.conv1.weight", "decoder.up.0.block.0.conv1.weight",
               "decoder.up.1.upsample.conv.weight", "decoder.conv_out.weight",
               "quant_conv.weight", "post_quant_conv.weight", "quantize.embedding.weight"]


def test_parameter_names_follow_taming_layout():
    keys = set(VQModel(TINY).state_dict())
    for key in TAMING_KEYS:
        assert key in keys, key
    assert "decoder.up.0.upsample.conv.weight" not in keys  # full-resolution level has none


def test_any_image_size_round_trips_in_shape():
    model = tiny_model()
    x = torch.rand(1, 3, 37, 70) * 2 - 1
    xp = pad_to_multiple(x, 16)
    assert xp.shape[-2:] == (48, 80)
    assert torch.equal(xp[..., :37, :70], x)
    with torch.no_grad():
        y, _, idx = model(xp)
    assert y.shape == xp.shape and idx.shape == (1, 3, 5)


def _taming_files(tmp_path, model: VQModel, extra=None):
    cfg = model.config
    state = {k: v for k, v in model.state_dict().items()}
    state["loss.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4)  # ignored by the loader
    state.update(extra or {})
    torch.save({"state_dict": state, "global_step": 10}, tmp_path / "last.ckpt")
    config = {"model": {"target": "taming.models.vqgan.VQModel", "params": {
        "embed_dim": cfg.embed_dim, "n_embed": cfg.n_embed,
        "ddconfig": {"double_z": False, "z_channels": cfg.z_channels, "resolution": cfg.resolution,
                     "in_channels": 3, "out_ch": 3, "ch": cfg.ch, "ch_mult": list(cfg.ch_mult),
                     "num_res_blocks": cfg.num_res_blocks,
                     "attn_resolutions": list(cfg.attn_resolutions),
                     "dropout": 0.0}}}}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "last.ckpt", tmp_path / "model.yaml"


def test_taming_checkpoint_loads_and_decodes_identically(tmp_path):
    cfg = TokenizerConfig(**{**TINY.to_dict(), "attn_resolutions": (16,)})
    torch.manual_seed(3)
    original = VQModel(cfg).eval()
    ckpt, conf = _taming_files(tmp_path, original)
    loaded = load_taming_checkpoint(ckpt, conf)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], original(x)[0])


def test_taming_checkpoint_wrong_shape_is_named(tmp_path):
    model = tiny_model()
    ckpt, conf = _taming_files(tmp_path, model, {"quant_conv.weight": torch.zeros(3, 3, 1, 1)})
    with pytest.raises(CheckpointError, match="quant_conv.weight"):
        load_taming_checkpoint(ckpt, conf)


def test_taming_config_garbage(tmp_path):
    (tmp_path / "bad.yaml").write_text("model: {params: {}}")
    torch.save({"state_dict": {}}, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="bad.yaml"):
        load_taming_checkpoint(tmp_path / "x.ckpt", tmp_path / "bad.yaml")


def test_unsafe_pickle_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"state_dict": Evil()}))
    _, conf = _taming_files(tmp_path, tiny_model())
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_taming_checkpoint(tmp_path / "evil.ckpt", conf)


def test_our_weights_round_trip_in_float16(tmp_path):
    model = tiny_model()
    save_tokenizer(model, tmp_path / "t.safetensors", {"step": 1})
    loaded, info = load_tokenizer(tmp_path / "t.safetensors")
    assert info == {"step": 1}
    w0, w1 = model.quantize.embedding.weight, loaded.quantize.embedding.weight
    assert torch.allclose(w0, w1, rtol=1e-3, atol=1e-3)


def test_garbage_weights_file(tmp_path):
    (tmp_path / "t.safetensors").write_bytes(b"not weights at all")
    with pytest.raises(CheckpointError, match="t.safetensors"):
        load_tokenizer(tmp_path / "t.safetensors")


def test_ema_codebook_restarts_dead_codes():
    torch.manual_seed(0)
    cfg = TokenizerConfig(**{**TINY.to_dict(), "restart_after": 1, "ema_decay": 0.5})
    q = VQModel(cfg).quantize.train()
    z = torch.randn(4, cfg.embed_dim, 8, 8)
    for _ in range(5):
        _, loss, idx = q(z)
    assert len(torch.unique(idx)) > cfg.n_embed // 4
    assert torch.isfinite(loss)


def test_norm_groups_is_part_of_the_saved_model(tmp_path):
    from dataclasses import replace

    old = TokenizerConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "norm_groups"})
    assert old.norm_groups == 32  # weights saved before the option load as taming's layout
    cfg = replace(TINY, norm_groups=8)
    model = VQModel(cfg).eval()
    assert {m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)} == {8}
    save_tokenizer(model, tmp_path / "g8.safetensors", {})
    loaded, _ = load_tokenizer(tmp_path / "g8.safetensors")
    assert loaded.config.norm_groups == 8
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():  # fp16 storage: close, not equal
        assert torch.allclose(model(x)[0], loaded.eval()(x)[0], atol=0.05)
    with pytest.raises(ValueError, match="norm_groups 7 does not divide"):
        replace(TINY, norm_groups=7)


def test_upsampling_as_a_transposed_convolution_gives_the_same_pixels(monkeypatch):
    """Inference decodes each 2x upsampling + 3x3 convolution as one stride-2 transposed
    convolution; training, and bf16 where it is emulated, keep taming's form. Both give the same
    picture, at any size."""
    from codec import tokenizer
    from codec.tokenizer import Upsample

    torch.manual_seed(3)
    up = Upsample(8)
    for shape in [(1, 8, 5, 7), (2, 8, 1, 1), (1, 8, 16, 3)]:
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        reference = up.conv(torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
        with torch.no_grad():
            fast = up(x)
        assert fast.shape == reference.shape
        assert torch.allclose(fast, reference, atol=1e-5), (fast - reference).abs().max()
    with torch.no_grad():
        up.conv.weight.mul_(2)  # changed weights: the cached kernel follows
        assert torch.allclose(up(x), up.conv(torch.nn.functional.interpolate(x, scale_factor=2.0)), atol=1e-5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        taming = up.conv(torch.nn.functional.interpolate(x, scale_factor=2.0))
        # bf16 emulated: taming's form, the faster one there
        monkeypatch.setattr(tokenizer, "_cpu_native_bf16", lambda: False)
        assert torch.equal(up(x), taming)
        # bf16 native: the transposed form, the same picture to bf16's rounding
        monkeypatch.setattr(tokenizer, "_cpu_native_bf16", lambda: True)
        native = up(x)
        assert not torch.equal(native, taming) and torch.allclose(native.float(), taming.float(), atol=0.1)
    assert not tokenizer.transposed_fast_under_autocast("cuda")
    model = tiny_model()
    idx = torch.randint(0, TINY.n_embed, (1, 3, 5))
    with torch.no_grad():
        fast = model.decode_indices(idx)
    with torch.enable_grad():
        slow = model.decode_indices(idx)  # the training path
    assert torch.allclose(fast, slow.detach(), atol=1e-4)


def test_restoring_norm_starts_as_the_plain_decoder_and_saves_its_map(tmp_path):
    """A decoder given --restore-stats decodes exactly as before until trained; its learned map
    is saved and loaded with the model, and a trained map moves the picture's colour."""
    from dataclasses import replace

    from codec.tokenizer import RestoringNorm

    plain = tiny_model()
    restoring = VQModel(replace(TINY, restore_stats=True)).eval()
    missing, unexpected = restoring.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["decoder.norm_out.restore.bias", "decoder.norm_out.restore.weight"]
    assert not unexpected and isinstance(restoring.decoder.norm_out, RestoringNorm)
    idx = torch.randint(0, TINY.n_embed, (1, 2, 3))
    with torch.no_grad():
        assert torch.equal(plain.decode_indices(idx), restoring.decode_indices(idx))
        restoring.decoder.norm_out.restore.bias.fill_(0.5)
        moved = restoring.decode_indices(idx)
    assert (moved - plain.decode_indices(idx)).abs().mean() > 1e-3
    save_tokenizer(restoring, tmp_path / "r.safetensors", {})
    loaded, _ = load_tokenizer(tmp_path / "r.safetensors")
    assert loaded.config.restore_stats
    with torch.no_grad():
        assert torch.allclose(loaded.decode_indices(idx), moved, atol=0.02)
