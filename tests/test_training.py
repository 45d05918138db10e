"""The training loop that the tokenizer and the transformer share: schedule, log, best weights,
checkpoints, time limit and resume."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from simnet.training.loop import Schedule, TrainingRun


def test_schedule_warms_up_holds_and_decays():
    s = Schedule(lr=1e-3, steps=100, decay_start=60, warmup=10, min_lr_ratio=0.1)
    assert s.at(0) == pytest.approx(1e-4) and s.at(9) == pytest.approx(1e-3)
    assert s.at(30) == s.at(59) == 1e-3
    assert s.at(80) == pytest.approx(1e-3 * (1 - 0.5 * 0.9))
    assert s.at(100) == pytest.approx(1e-4) and s.at(500) == pytest.approx(1e-4)


def _toy_run(out, steps, max_minutes=0.0):
    """Fit y = 3x with one weight; validation score is minus the error."""
    run = TrainingRun(out, threads=1, seed=0, log=lambda s: None, max_minutes=max_minutes)
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1)
    step, best = 0, -float("inf")
    if run.resumed is not None:
        w.data.copy_(run.resumed["w"])
        opt.load_state_dict(run.resumed["optimizer"])
        step, best = run.resumed["step"], run.resumed["best"]
    saved = []

    def train_step(lr):
        x = torch.randn(16)
        loss = ((w * x - 3 * x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    run.loop(opt, Schedule(0.1, steps, steps // 2, 2, 0.1), step, best, train_step,
             validate=lambda: {"val_err": abs(float(w.detach()) - 3)}, score=lambda rec: -rec["val_err"],
             save_best=lambda rec: saved.append(rec["step"]),
             snapshot=lambda step, best: {"w": w.data.clone(), "optimizer": opt.state_dict(),
                                          "step": step, "best": best},
             val_every=10, log_every=5)
    return float(w.detach()), saved


def test_loop_logs_saves_the_best_and_resumes(tmp_path):
    w, saved = _toy_run(tmp_path, 30)
    assert w == pytest.approx(3, abs=0.05)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    periodic = [r for r in records if "loss" in r]
    assert [r["step"] for r in periodic] == [5, 10, 15, 20, 25, 30]
    assert list(periodic[0]) == ["step", "lr", "minutes", "loss"]
    assert [r["step"] for r in records if "val_err" in r] == [10, 20, 30]
    assert saved and saved[0] == 10  # the first validation is always the best so far
    assert torch.load(tmp_path / "last.pt", weights_only=False)["step"] == 30
    # the same command with more steps resumes from last.pt, at step 30
    _, saved_more = _toy_run(tmp_path, 40)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r][-2:] == [35, 40]


def test_time_limit_stops_resumably(tmp_path):
    _toy_run(tmp_path, 10_000_000, max_minutes=1e-9)
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert 1 <= state["step"] < 10_000_000


@pytest.fixture
def noise_photos(tmp_path, monkeypatch):
    """Three random 64x80 pictures as the tokenizer's training split (the first also validates)."""
    import simnet.training.tokenizer as tt

    rng = np.random.default_rng(0)
    files = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(path)
        files.append(path)
    monkeypatch.setattr(tt, "training_images", lambda: files)
    monkeypatch.setattr(tt, "validation_images", lambda: files[:1])
    return files


def test_tokenizer_training_runs_logs_and_resumes(tmp_path, noise_photos):
    import simnet.training.tokenizer as tt
    from codec.checkpoint import load_tokenizer
    from conftest import TINY

    cfg = tt.TrainConfig(out=str(tmp_path / "run"), steps=4, decay_start=2, warmup=1, batch=2, crop=32,
                         threads=1, val_every=2, model=TINY)
    lines = []
    best = tt.train(cfg, log=lines.append)
    model, info = load_tokenizer(best)
    assert info["step"] in (2, 4) and model.config.n_embed == TINY.n_embed
    assert any(line.startswith("step=2 val_psnr=") for line in lines)
    cfg.steps = 6
    tt.train(cfg, log=lines.append)
    assert any(line.startswith("resumed from") and line.endswith("at step 4") for line in lines)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_psnr" in r] == [2, 4, 6]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_loss_aware_training_decodes_lost_grids_logs_them_and_resumes(tmp_path, noise_photos, tiny_weights, precision):
    """--loss-aware: the lossy decode's loss is logged and trains the encoder too; validation
    scores 20% of tokens lost; the mask generator resumes where it stopped."""
    import simnet.training.tokenizer as tt
    from codec.checkpoint import load_tokenizer
    from codec.hardware import resolve
    from codec.tokens import random_token_mask

    start = tiny_weights / "tokenizer.safetensors"
    initial, _ = load_tokenizer(start)
    cfg = tt.TrainConfig(out=str(tmp_path / "run"), steps=3, decay_start=2, warmup=1, batch=2, crop=64,
                         threads=1, val_every=3, lr=1e-3, init=str(start), loss_aware=1.0, best_by="lossy",
                         precision=precision)
    lines = []
    trained, info = load_tokenizer(tt.train(cfg, log=lines.append))
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(r["lossy"] > 0 for r in records if "loss" in r)
    assert np.isfinite(records[-1]["val_psnr_0.2"]) and np.isfinite(records[-1]["val_psnr"])
    # validation decodes each image twice: as coded, then with a fifth of its tokens lost and
    # filled. Which decode scores better is the tiny random model's luck and the precision's (under
    # bf16 they can tie or swap), so check what reaches the decoder, not the score's order.
    inputs = []
    decode_code = trained.decode_code
    trained.decode_code = lambda zq: inputs.append(zq.detach().float().clone()) or decode_code(zq)
    tt.validate(trained, [np.asarray(Image.open(noise_photos[0]).convert("RGB"))],
                compute=resolve("cpu", precision))
    assert len(inputs) == 2
    changed = (inputs[0] != inputs[1]).any(1)[0].numpy()
    lost = random_token_mask(changed.shape, tt.VAL_LOSS, 0)
    assert changed.any() and not (changed & ~lost).any()  # lost tokens refilled, the others as coded
    assert not torch.allclose(initial.state_dict()["encoder.conv_in.weight"],
                              trained.state_dict()["encoder.conv_in.weight"])
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    resumed = np.random.default_rng()
    resumed.bit_generator.state = state["mask_rng"]
    assert resumed.random() != np.random.default_rng(cfg.seed + 7).random()  # masks were drawn
    cfg.steps = 4
    tt.train(cfg, log=lines.append)
    assert any(line.startswith("resumed from") for line in lines)


def test_loss_aware_conceal_trains_the_mask_channel_with_the_tokenizer_and_resumes(tmp_path, noise_photos, tiny_weights):
    """--loss-aware --conceal: the lossy decode is told what was lost; the run writes a concealing
    decoder that loads for its own tokenizer only, decodes a grid with nothing lost as the
    tokenizer does and one with lost tokens otherwise; validation logs the plain decode's PSNR on
    the same fills beside the concealing one's; the mask weights resume."""
    import simnet.training.tokenizer as tt
    from codec.checkpoint import load_tokenizer
    from codec.conceal import ConcealError, load_concealer
    from codec.safe_weights import file_checksum

    cfg = tt.TrainConfig(out=str(tmp_path / "run"), steps=3, decay_start=2, warmup=1, batch=2, crop=64,
                         threads=1, val_every=3, lr=1e-2, init=str(tiny_weights / "tokenizer.safetensors"),
                         loss_aware=1.0, conceal=True, best_by="lossy")
    best = tt.train(cfg, log=lambda s: None)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    last = [r for r in records if "val_psnr" in r][-1]
    assert "val_psnr_0.2_plain" in last and last["val_psnr_0.2"] != last["val_psnr_0.2_plain"]
    concealer = load_concealer(tmp_path / "run" / "best-conceal.safetensors", file_checksum(best))
    with pytest.raises(ConcealError, match="another tokenizer"):
        load_concealer(tmp_path / "run" / "best-conceal.safetensors", "0" * 64)
    tokenizer, _ = load_tokenizer(best)
    mask_weights = concealer.post_quant_conv.weight[:, -1, 0, 0]
    assert mask_weights.abs().max() > 0  # trained from zero
    zq = tokenizer.quantize.embedding.weight[torch.randint(0, tokenizer.config.n_embed, (1, 4, 4))].permute(0, 3, 1, 2)
    nothing, some = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    some[..., 1, 2] = 1
    with torch.no_grad():
        plain = tokenizer.decode_code(zq)
        assert torch.allclose(concealer(zq, nothing), plain, atol=1e-5)
        assert not torch.allclose(concealer(zq, some), plain, atol=1e-3)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert torch.equal(state["lost_offset"].half().float(), mask_weights.float())
    lines = []
    cfg.steps = 4
    tt.train(cfg, log=lines.append)
    assert any(line.startswith("resumed from") for line in lines)
    with pytest.raises(tt.TrainingSetupError, match="needs --loss-aware"):
        tt.train(tt.TrainConfig(out=str(tmp_path / "other"), steps=1, batch=1, crop=64, threads=1,
                                init=str(tiny_weights / "tokenizer.safetensors"), conceal=True), log=lambda s: None)


def test_chroma_term_sees_colour_not_brightness():
    from simnet.training.tokenizer import chroma_l1

    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert chroma_l1(x + 0.3, x).item() < 1e-6  # the same shift on R, G and B: grey, no chroma
    tinted = x + torch.tensor([0.3, 0.0, -0.3])[None, :, None, None]
    assert chroma_l1(tinted, x).item() > 0.1


def test_decoder_fine_tune_restores_stats_trains_only_what_it_is_told(tmp_path, noise_photos, tiny_weights):
    """--decoder-only with --restore-stats and --train-only: the encoder and the untouched decoder
    layers keep their weights, the restoring map is trained and saved, a prefix that names no
    parameter is refused in one line."""
    import simnet.training.tokenizer as tt
    from codec.checkpoint import load_tokenizer

    start, levels = tiny_weights / "tokenizer.safetensors", tiny_weights / "levels.safetensors"
    initial, _ = load_tokenizer(start)
    cfg = tt.TrainConfig(out=str(tmp_path / "run"), steps=3, decay_start=2, warmup=1, batch=2, crop=32,
                         threads=1, val_every=3, lr=1e-2, init=str(start),
                         decoder_only_levels=str(levels), restore_stats=True,
                         chroma_weight=1.0, train_only=("decoder.norm_out", "decoder.conv_out"),
                         best_by="ciede2000")
    trained, info = load_tokenizer(tt.train(cfg, log=lambda s: None))
    assert trained.config.restore_stats and "val_ciede2000" in info
    before, after = initial.state_dict(), trained.state_dict()
    for key in ("encoder.conv_in.weight", "decoder.up.0.block.0.conv1.weight", "post_quant_conv.weight"):
        assert torch.allclose(before[key], after[key], atol=1e-3), key
    assert after["decoder.norm_out.restore.weight"].abs().sum() > 0
    bad = tt.TrainConfig(**{**vars(cfg), "out": str(tmp_path / "bad"), "train_only": ("decoder.nothing",)})
    with pytest.raises(tt.TrainingSetupError, match="decoder.nothing"):
        tt.train(bad, log=lambda s: None)


def test_adversarial_term_trains_a_discriminator_and_resumes_it(tmp_path, noise_photos, tiny_weights):
    import simnet.training.tokenizer as tt
    from simnet.training.discriminator import DiscriminatorConfig, PatchDiscriminator, hinge_discriminator_loss

    logits = PatchDiscriminator(DiscriminatorConfig(channels=8))(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 1, 6, 6)  # one logit per overlapping patch
    assert hinge_discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0.0
    cfg = tt.TrainConfig(out=str(tmp_path / "run"), steps=3, decay_start=2, warmup=1, batch=2, crop=32,
                         threads=1, val_every=3, init=str(tiny_weights / "tokenizer.safetensors"),
                         decoder_only_levels=str(tiny_weights / "levels.safetensors"), gan_weight=0.5,
                         gan_start=1, disc=DiscriminatorConfig(channels=8), best_by="last")
    lines = []
    tt.train(cfg, log=lines.append)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert "discriminator" in state and state["discriminator_optimizer"]["state"]  # it took steps
    cfg.steps = 4
    tt.train(cfg, log=lines.append)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("resumed from" in line for line in lines)
    assert [r["step"] for r in records if "val_psnr" in r] == [3, 4]


def test_lost_pixels_weigh_more_and_the_weights_average_one():
    from simnet.training.conceal import pixel_weights

    lost = torch.zeros(2, 1, 3, 4)
    lost[0, 0, 1, 2] = 1
    w = pixel_weights(lost, 3.0)
    assert w.shape == (2, 1, 48, 64) and abs(w.mean().item() - 1) < 1e-6
    assert torch.allclose(w[0, 0, 16:32, 32:48], 4 * w[0, 0, 0, 0]) and w[1].std() < 1e-6
    assert torch.equal(pixel_weights(lost, 0.0), torch.ones(2, 1, 48, 64))


def test_conceal_training_learns_the_mask_logs_both_decoders_and_resumes(tmp_path, noise_photos, tiny_weights, monkeypatch):
    """A few steps with a transformer-free fill: the plain decoder's validation is logged once,
    the concealer's at each validation, the mask channel leaves zero, and the run resumes."""
    import simnet.training.conceal as tc
    from codec.conceal import load_concealer
    from recovery import get_method

    monkeypatch.setattr(tc, "training_images", lambda: noise_photos)
    monkeypatch.setattr(tc, "validation_images", lambda: noise_photos[:1])
    cfg = tc.ConcealTrainConfig(out=str(tmp_path / "run"), tokenizer=str(tiny_weights / "tokenizer.safetensors"),
                                levels=str(tiny_weights / "levels.safetensors"), steps=3, decay_start=2,
                                warmup=1, batch=2, crop=32, lr=1e-2, lost_weight=3.0, threads=1, val_every=3,
                                val_images=1)
    lines = []
    model = load_concealer(tc.train(cfg, get_method("neighbour").recover, log=lines.append))
    assert model.post_quant_conv.weight[:, -1].abs().sum() > 0
    assert any(line.startswith("step=0 plain_psnr_0.2=") for line in lines)
    assert any(line.startswith("step=3 val_psnr_0.2=") for line in lines)
    cfg.steps = 4
    tc.train(cfg, get_method("neighbour").recover, log=lines.append)
    assert any(line.startswith("resumed from") and line.endswith("at step 3") for line in lines)


def test_crops_skip_pictures_smaller_than_the_crop(tmp_path):
    from simnet.training.tokenizer import CropSampler, TrainingSetupError

    rng = np.random.default_rng(0)
    for name, shape in (("big.png", (80, 96, 3)), ("strip.png", (40, 200, 3))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / name)
    sampler = CropSampler([tmp_path / "big.png", tmp_path / "strip.png"], 64, seed=1)
    assert len(sampler.images) == 1 and sampler.batch(5).shape == (5, 3, 64, 64)
    with pytest.raises(TrainingSetupError, match="--crop 128: no training image is at least 128 px"):
        CropSampler([tmp_path / "strip.png", tmp_path / "big.png"], 128, seed=1)
