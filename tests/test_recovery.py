import json
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.tokens import LossyTokenGrid, TokenGrid, draw_mask
from recovery.baselines import neighbour_fill
from recovery import RecoveryError, get_method
from recovery.baselines import NeighbourRecovery, NoneRecovery
from simnet.training.transformer import (RecoveryTrainConfig, neighbour_reference, train, validate,
                                        validation_masks)
from recovery.transformer import MaskedTokenTransformer, TransformerConfig
from recovery.transformer_recovery import TransformerRecovery, load_transformer, save_transformer, window_starts


def lossy(indices, missing, level):
    return LossyTokenGrid(TokenGrid(np.where(missing, 0, indices), level, (16 * indices.shape[0],
                                                                          16 * indices.shape[1])), missing)


def smooth_codebook(k=64, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, generator=g)


def test_none_fills_the_code_nearest_the_mean():
    cb = smooth_codebook()
    idx = np.random.default_rng(0).integers(0, 64, (6, 8))
    miss = np.zeros((6, 8), bool)
    miss[2, 3] = miss[4, 4] = True
    out = NoneRecovery().recover(lossy(idx, miss, 64), cb)
    nearest_mean = int(torch.cdist(cb.mean(0, keepdim=True), cb).argmin())
    assert out[2, 3] == out[4, 4] == nearest_mean
    assert np.array_equal(out[~miss], idx[~miss])


def test_neighbour_restores_a_flat_region_and_fills_holes_inwards():
    cb = smooth_codebook()
    idx = np.full((10, 10), 7)
    miss = np.zeros((10, 10), bool)
    miss[2:8, 2:8] = True  # a hole with no known neighbour at its centre
    out = NeighbourRecovery().recover(lossy(idx, miss, 64), cb)
    assert (out == 7).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_batched_neighbour_fill_fills_each_grid_as_alone(b, h, w, seed):
    """The batched fill that training uses gives each grid the codes it gets alone (as the
    receiver's `neighbour` fills it) wherever a lost position has a received neighbour, keeps
    received vectors and marks only lost positions. Received vectors are drawn off the codebook,
    and positions filled in later rounds are left out of the comparison: their means can be the
    midpoint of two filled codes, equally near both, and which wins such a tie depends on the
    rounding of the batch's products."""
    rng = np.random.default_rng(seed)
    cb = torch.from_numpy(rng.normal(size=(64, 4))).float()
    vectors = torch.from_numpy(rng.normal(size=(b, 4, h, w))).float()
    lost = torch.from_numpy(rng.random((b, h, w)) < rng.random())
    filled, codes = neighbour_fill(vectors, lost, cb)
    kernel = torch.ones(1, 1, 3, 3)
    kernel[0, 0, 1, 1] = 0
    first_round = lost & (torch.nn.functional.conv2d((~lost).float()[:, None], kernel, padding=1)[:, 0] > 0)
    for i in range(b):
        alone, alone_codes = neighbour_fill(vectors[i:i + 1], lost[i:i + 1], cb)
        assert torch.equal(codes[i][first_round[i]], alone_codes[0][first_round[i]])
    assert torch.equal(codes >= 0, lost)
    assert torch.equal(filled.permute(0, 2, 3, 1)[~lost], vectors.permute(0, 2, 3, 1)[~lost])
    assert torch.equal(filled.permute(0, 2, 3, 1)[lost], cb[codes[lost]])


def test_neighbour_fill_passes_its_gradient_to_the_neighbours_it_averages():
    cb = torch.randn(32, 4)
    vectors = cb[torch.randint(0, 32, (1, 5, 5))].permute(0, 3, 1, 2).clone().requires_grad_(True)
    lost = torch.zeros(1, 5, 5, dtype=torch.bool)
    lost[0, 2, 2] = True
    filled, _ = neighbour_fill(vectors, lost, cb)
    filled[0, :, 2, 2].sum().backward()
    touched = vectors.grad.abs().sum(1)[0] > 0
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[1:4, 1:4] = True
    expected[2, 2] = False  # the lost token's own vector was never received
    assert torch.equal(touched, expected)
    assert torch.allclose(vectors.grad[0, :, 1, 1], torch.full((4,), 1 / 8))


def test_baselines_reject_bad_inputs():
    cb = smooth_codebook()
    good = lossy(np.zeros((4, 4), int), np.zeros((4, 4), bool), 64)
    with pytest.raises(RecoveryError, match="codebook"):
        NeighbourRecovery().recover(good, smooth_codebook(k=16))
    with pytest.raises(ValueError, match="mask"):
        LossyTokenGrid(TokenGrid(np.zeros((4, 4), int), 64, (64, 64)), np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match="outside"):
        TokenGrid(np.full((4, 4), 99), 64, (64, 64))
    with pytest.raises(RecoveryError, match="unknown recovery method"):
        get_method("magic")


TINY = TransformerConfig(levels=(16, 64), n_layer=2, n_head=2, n_embd=32, max_side=16)


def test_transformer_shapes_and_levels():
    model = MaskedTokenTransformer(TINY)
    idx = torch.randint(0, 16, (2, 5, 7))
    miss = torch.rand(2, 5, 7) < 0.3
    assert model(idx, miss, 16).shape == (2, 5, 7, 16)
    assert model(idx, miss, 64).shape == (2, 5, 7, 64)
    with pytest.raises(ValueError, match="levels"):
        model(idx, miss, 256)
    with pytest.raises(ValueError, match="exceeds"):
        model(torch.zeros(1, 17, 4, dtype=torch.long), torch.zeros(1, 17, 4, dtype=torch.bool), 16)
    # an offset moves the grid in the position tables; past the table's end it is refused
    shifted = model(idx, miss, 16, offset=(3, 2))
    assert shifted.shape == (2, 5, 7, 16) and not torch.allclose(shifted, model(idx, miss, 16))
    side = TINY.max_side
    with pytest.raises(ValueError, match="exceeds"):
        model(idx, miss, 16, offset=(side - 4, 0))


def test_training_offsets_reach_every_position():
    from simnet.training.transformer import GridSampler

    sampler = GridSampler({16: stripes(4, h=8, w=8)}, crop=8, seed=0)
    offsets = np.array([sampler.offset(24) for _ in range(400)])
    assert offsets.min() == 0 and offsets.max() == 24 - 8


def test_masked_positions_do_not_leak_their_token():
    torch.manual_seed(0)
    model = MaskedTokenTransformer(TINY).eval()
    idx = torch.randint(0, 64, (1, 4, 4))
    miss = torch.zeros(1, 4, 4, dtype=torch.bool)
    miss[0, 1, 2] = True
    other = idx.clone()
    other[0, 1, 2] = (idx[0, 1, 2] + 5) % 64
    with torch.no_grad():
        assert torch.equal(model(idx, miss, 64), model(other, miss, 64))


def stripes(n, h=12, w=12, k=16, seed=0):
    """Grids whose every row repeats one token: the missing ones follow from their row."""
    rng = np.random.default_rng(seed)
    return [np.repeat(rng.integers(0, k, (h, 1)), w, axis=1) for _ in range(n)]


def test_training_learns_a_learnable_pattern_and_resumes(tmp_path):
    grids, val = {16: stripes(40)}, {16: stripes(4, seed=2)}
    cfg = RecoveryTrainConfig(out=str(tmp_path), steps=400, decay_start=300, warmup=20, batch=16, crop=8,
                              lr=2e-3, val_every=400, threads=1,
                              model=TransformerConfig(n_layer=2, n_head=2, n_embd=32, max_side=16))
    before = validate(MaskedTokenTransformer(TransformerConfig(levels=(16,), n_layer=2, n_head=2,
                                                               n_embd=32, max_side=16)), val)
    best = train(cfg, grids, val, log=lambda s: None)
    model, info, _ = load_transformer(best)
    scores = validate(model, val)
    # chance is 1/16: the model must have learnt to copy a lost token from its row
    assert scores["val_acc_16"] > 0.25 and scores["val_nll_16"] < before["val_nll_16"] - 0.3
    cfg.steps = 410
    train(cfg, grids, val, log=lambda s: None)  # resumes from last.pt and goes on


def test_transformer_recovery_interface(tmp_path):
    torch.manual_seed(0)
    model = MaskedTokenTransformer(TINY)
    save_transformer(model, tmp_path / "t.safetensors", {"note": "test"})
    rec = TransformerRecovery.from_weights(tmp_path / "t.safetensors", steps=4)
    assert rec.checksum and len(rec.checksum) == 64
    idx = np.random.default_rng(0).integers(0, 64, (6, 8))
    miss = np.random.default_rng(1).random((6, 8)) < 0.4
    out = rec.recover(lossy(idx, miss, 64), smooth_codebook())
    assert out.shape == (6, 8) and out.max() < 64
    assert np.array_equal(out[~miss], idx[~miss])
    one_shot = TransformerRecovery(model, steps=1).recover(lossy(idx, miss, 64), smooth_codebook())
    assert np.array_equal(one_shot[~miss], idx[~miss])
    with pytest.raises(RecoveryError, match="trained for levels"):
        rec.recover(lossy(np.zeros((4, 4), int), np.ones((4, 4), bool), 256), smooth_codebook(k=256))


def test_transformer_fills_lost_positions_with_its_predictions():
    torch.manual_seed(0)
    model = MaskedTokenTransformer(TINY).eval()
    cb = smooth_codebook()
    idx = np.random.default_rng(0).integers(0, 64, (6, 8))
    miss = np.random.default_rng(1).random((6, 8)) < 0.4
    grid = lossy(idx, miss, 64)
    with torch.no_grad():
        logits = model(torch.from_numpy(grid.grid.indices)[None], torch.from_numpy(miss)[None], 64)[0]
    one_shot = TransformerRecovery(model, steps=1, decision="argmax", precision="fp32").recover(grid, cb)
    assert np.array_equal(one_shot[miss], logits.argmax(-1).numpy()[miss])
    assert grid.missing.sum() == miss.sum()  # the caller's mask is left alone
    from recovery.transformer_recovery import mmse_codes

    mmse = TransformerRecovery(model, steps=1, decision="mmse", precision="fp32").recover(grid, cb)
    assert np.array_equal(mmse[miss], mmse_codes(torch.softmax(logits, -1), cb).numpy()[miss])


def test_wrong_transformer_weights_are_named(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    with pytest.raises(RecoveryError, match="bad.safetensors"):
        TransformerRecovery.from_weights(tmp_path / "bad.safetensors")
    with pytest.raises(RecoveryError, match="no transformer weights"):
        TransformerRecovery.from_weights(tmp_path / "missing.safetensors")


def test_training_masks_cover_the_ratio():
    rng = np.random.default_rng(0)
    for ratio in (0.1, 0.3, 0.6):
        got = np.mean([draw_mask(rng, 16, 16, ratio).mean() for _ in range(300)])
        assert abs(got - ratio) < 0.08


def test_scattered_training_masks_lose_exactly_the_ratio_and_mixed_ones_do_not():
    rng = np.random.default_rng(1)
    scattered = [draw_mask(rng, 16, 16, 0.3, "scattered") for _ in range(100)]
    assert all(m.sum() == round(0.3 * 256) for m in scattered)
    mixed = [draw_mask(rng, 16, 16, 0.3) for _ in range(100)]
    assert any(m.sum() != round(0.3 * 256) for m in mixed)  # runs and rectangles
    with pytest.raises(ValueError, match="one of mixed, scattered"):
        draw_mask(rng, 16, 16, 0.3, "bursts")


def test_mmse_decision_picks_the_code_nearest_the_posterior_mean():
    from recovery.transformer_recovery import mmse_codes

    cb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 0.0]])
    # torn between codes 0 and 2: argmax says 0 (or 2), the expected-error choice is code 1
    probs = torch.tensor([[0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert mmse_codes(probs, cb).tolist() == [1, 3]
    # brute force: the expected squared distance is smallest at the chosen code
    g = torch.Generator().manual_seed(0)
    cb = torch.randn(32, 4, generator=g)
    probs = torch.softmax(3 * torch.randn(50, 32, generator=g), -1)
    expected = (probs[:, None, :] * torch.cdist(cb, cb).pow(2)[None]).sum(-1)  # (50, j)
    assert torch.equal(mmse_codes(probs, cb), expected.argmin(1))


def test_method_specs_are_parsed_and_checked():
    from recovery import parse_method

    assert parse_method("neighbour") == ("neighbour", {})
    assert parse_method("transformer:1") == ("transformer", {"steps": 1})
    assert parse_method("transformer:8:argmax") == ("transformer", {"steps": 8, "decision": "argmax"})
    assert parse_method("transformer:1:mmse:grid") == ("transformer", {"steps": 1, "decision": "mmse", "window": None})
    assert parse_method("transformer:1:mmse:24")[1]["window"] == 24
    for bad, message in (("magic", "unknown recovery method"), ("neighbour:3", "only the transformer"),
                         ("transformer:x", "must be an integer"), ("transformer:0", ">= 1"),
                         ("transformer:4:best", "decision must be one of"), ("transformer:1:mmse:0", "window"),
                         ("transformer:1:mmse:wide", "window"), ("transformer:1:mmse:8:2", "expected")):
        with pytest.raises(RecoveryError, match=message):
            parse_method(bad)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 80), st.integers(1, 24))
def test_windows_tile_every_side(n, window):
    starts = window_starts(n, window)
    covered = np.zeros(n, dtype=bool)
    for s in starts:
        assert 0 <= s and s + min(window, n) <= n
        covered[s:s + window] = True
    assert covered.all() and len(starts) == -(-n // window)


def test_windowed_recovery_predicts_each_window_on_its_own():
    torch.manual_seed(0)
    model = MaskedTokenTransformer(TINY).eval()
    idx = np.random.default_rng(0).integers(0, 64, (12, 16))
    miss = np.random.default_rng(1).random((12, 16)) < 0.3
    grid = lossy(idx, miss, 64)
    got = TransformerRecovery(model, steps=1, decision="argmax", precision="fp32", window=8).recover(grid, smooth_codebook())
    # a 12x16 grid in windows of 8: rows 0-7 and 4-11 (rows 8-11 belong to the second, rows 4-7 to
    # whichever window they sit more centrally in), columns 0-7 and 8-15
    expected = np.full((12, 16), -1)
    for y0, rows in ((0, slice(0, 6)), (4, slice(2, 8))):
        for x0 in (0, 8):
            window_idx = torch.from_numpy(grid.grid.indices[y0:y0 + 8, x0:x0 + 8].copy())[None]
            window_miss = torch.from_numpy(miss[y0:y0 + 8, x0:x0 + 8].copy())[None]
            with torch.no_grad():
                pred = model(window_idx, window_miss, 64)[0].argmax(-1).numpy()
            expected[y0 + rows.start:y0 + rows.stop, x0:x0 + 8] = pred[rows]
    assert np.array_equal(got[miss], expected[miss])
    assert np.array_equal(got[~miss], idx[~miss])
    whole = TransformerRecovery(model, steps=1, decision="argmax", precision="fp32", window=None).recover(grid, smooth_codebook())
    assert not np.array_equal(whole[miss], got[miss])  # the windows do change what the model sees
    with pytest.raises(RecoveryError, match="window"):
        TransformerRecovery(model, window=0)


def test_code_vector_model_knows_its_codebooks(tmp_path):
    cfg = TransformerConfig(levels=(16, 64), n_layer=1, n_head=2, n_embd=32, max_side=16, code_dim=4)
    torch.manual_seed(0)
    model = MaskedTokenTransformer(cfg)
    books = {16: smooth_codebook(16, seed=1), 64: smooth_codebook(64)}
    with pytest.raises(ValueError, match="shape"):
        model.set_codebooks({16: smooth_codebook(16, d=3), 64: books[64]})
    model.set_codebooks(books)
    save_transformer(model, tmp_path / "cv.safetensors")
    rec = TransformerRecovery.from_weights(tmp_path / "cv.safetensors", steps=2)
    assert rec.model.codebook_matches(64, books[64])  # survives fp16 storage
    idx = np.random.default_rng(0).integers(0, 64, (6, 8))
    miss = np.random.default_rng(1).random((6, 8)) < 0.4
    out = rec.recover(lossy(idx, miss, 64), books[64])
    assert np.array_equal(out[~miss], idx[~miss]) and out.max() < 64
    # the same indices under another codec's codebook mean other images: refused, not guessed
    with pytest.raises(RecoveryError, match="another codebook at level 64"):
        rec.recover(lossy(idx, miss, 64), smooth_codebook(64, seed=5))


def test_folded_output_layer_and_lost_only_logits_match_the_plain_computation():
    cfg = TransformerConfig(levels=(16, 64), n_layer=1, n_head=2, n_embd=32, max_side=16, code_dim=4,
                            local_features=True)
    torch.manual_seed(0)
    model = MaskedTokenTransformer(cfg).eval()
    model.set_codebooks({16: smooth_codebook(16, seed=1), 64: smooth_codebook(64)})
    with torch.no_grad():
        model.code_scale.fill_(1.7)
        model.head.bias.normal_()
    idx = torch.from_numpy(np.random.default_rng(0).integers(0, 64, (2, 6, 8)))
    miss = torch.from_numpy(np.random.default_rng(1).random((2, 6, 8)) < 0.4)
    with torch.no_grad():
        full = model(idx, miss, 64)
        lost = model(idx, miss, 64, at=miss)
        # the unfolded score: head logits + s (q.c - |c|^2 / 2), q = code_out(final hidden state)
        hidden = {}
        model.ln_f.register_forward_hook(lambda m, i, o: hidden.setdefault("x", o))
        model(idx, miss, 64)
        x, codes = hidden["x"], model.codes[16:80]
        plain = (x @ model.head.weight[16:80].t() + model.head.bias[16:80]
                 + model.code_scale * (model.code_out(x) @ codes.t() - 0.5 * codes.pow(2).sum(1)))
    assert torch.allclose(full.view(2, 48, 64), plain, atol=1e-5)
    assert lost.shape == (int(miss.sum()), 64) and torch.equal(lost, full[miss])


def test_bf16_recovery_agrees_with_fp32():
    cfg = TransformerConfig(levels=(64,), n_layer=2, n_head=2, n_embd=32, max_side=16, code_dim=4,
                            local_features=True)
    torch.manual_seed(0)
    model = MaskedTokenTransformer(cfg).eval()
    cb = smooth_codebook()
    model.set_codebooks({64: cb})
    idx = np.random.default_rng(0).integers(0, 64, (12, 16))
    miss = np.random.default_rng(1).random((12, 16)) < 0.3
    fast = TransformerRecovery(model, steps=1, decision="mmse", precision="bf16")
    exact = TransformerRecovery(model, steps=1, decision="mmse", precision="fp32")
    assert fast.net.blocks[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert model.blocks[0].mlp.c_fc.weight.dtype == torch.float32  # the caller's model is left alone
    a, b = fast.recover(lossy(idx, miss, 64), cb), exact.recover(lossy(idx, miss, 64), cb)
    assert np.array_equal(a[~miss], idx[~miss])
    assert (a[miss] == b[miss]).mean() > 0.9  # bf16 rounding may flip near-ties, not the picture


def test_shipped_transformer_matches_the_shipped_codec():
    from codec.images import builtin_images
    from codec.zoo import load_codec
    from recovery.transformer_recovery import WEIGHTS
    from simnet.experiment.frames import fit_frame

    if not WEIGHTS.exists():
        pytest.skip(f"{WEIGHTS} not shipped in this checkout")
    codec = load_codec()
    rec = get_method("transformer")
    for level in codec.level_sizes:
        assert rec.model.codebook_matches(level, codec.codebook(level)), level
    grid = codec.encode(fit_frame(builtin_images()[0][1], (256, 384)), 1024)
    miss = np.random.default_rng(0).random(grid.shape) < 0.2
    lossy_grid = LossyTokenGrid(TokenGrid(np.where(miss, 0, grid.indices), 1024, grid.image_size), miss)
    cb = codec.codebook(1024)
    out = rec.recover(lossy_grid, cb)
    assert np.array_equal(out[~miss], grid.indices[~miss]) and 0 <= out.min() and out.max() < 1024
    # its codes land near the lost ones: far nearer than the one fixed code of `none`
    def error(filled):
        return float((cb[filled[miss]] - cb[grid.indices[miss]]).pow(2).sum(1).mean())

    assert error(out) < 0.7 * error(NoneRecovery().recover(lossy_grid, cb))


def test_code_vector_training_runs_and_init_takes_this_codecs_codebooks(tmp_path):
    grids, val = {16: stripes(20)}, {16: stripes(2, seed=2)}
    books = {16: smooth_codebook(16, seed=1)}
    model_cfg = dict(n_layer=1, n_head=2, n_embd=32, max_side=16, code_dim=4, local_features=True)
    cfg = RecoveryTrainConfig(out=str(tmp_path / "a"), steps=20, decay_start=10, warmup=5, batch=4, crop=8,
                              val_every=20, threads=1, model=TransformerConfig(**model_cfg))
    best = train(cfg, grids, val, log=lambda s: None, codebooks=books)
    model, info, _ = load_transformer(best)
    assert "val_mean_code_sqerr_16" in info and model.codebook_matches(16, books[16])
    assert info["crop"] == 8 and TransformerRecovery.from_weights(best).window == 8  # attends as trained
    other = {16: smooth_codebook(16, seed=7)}
    cfg2 = RecoveryTrainConfig(out=str(tmp_path / "b"), steps=5, decay_start=3, warmup=1, batch=4, crop=8,
                               val_every=5, threads=1, init=str(best), model=TransformerConfig(**model_cfg))
    model2, _, _ = load_transformer(train(cfg2, grids, val, log=lambda s: None, codebooks=other))
    assert model2.codebook_matches(16, other[16]) and not model2.codebook_matches(16, books[16])
    with pytest.raises(ValueError, match="needs the codec's codebooks"):
        train(RecoveryTrainConfig(out=str(tmp_path / "c"), steps=1, crop=8, batch=2, threads=1,
                                  model=TransformerConfig(**model_cfg)), grids, val, log=lambda s: None)


def test_a_run_logs_neighbours_score_on_its_validation_masks(tmp_path):
    flat = {16: [np.full((6, 7), 3), np.full((5, 5), 9)]}
    books = {16: smooth_codebook(16, seed=1)}
    masks = validation_masks(flat, ratio=0.2)
    assert [m.shape for m in masks[16]] == [(6, 7), (5, 5)]
    assert [int(m.sum()) for m in masks[16]] == [8, 5]
    assert all((a == b).all() for a, b in zip(masks[16], validation_masks(flat, ratio=0.2)[16]))
    ref = neighbour_reference(flat, books)
    assert ref == {"ref_neighbour_acc_16": 1.0, "ref_neighbour_mean_code_sqerr_16": 0.0}  # flat grids: exact
    grids, val = {16: stripes(20)}, {16: stripes(2, seed=2)}
    model_cfg = dict(n_layer=1, n_head=2, n_embd=32, max_side=16, code_dim=4, local_features=True)
    cfg = RecoveryTrainConfig(out=str(tmp_path / "a"), steps=2, decay_start=1, warmup=1, batch=2, crop=8,
                              val_every=2, threads=1, model=TransformerConfig(**model_cfg))
    train(cfg, grids, val, log=lambda s: None, codebooks=books)
    records = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    logged = [r for r in records if "ref_neighbour_acc_16" in r]
    assert len(logged) == 1 and logged[0]["ref_neighbour_mean_code_sqerr_16"] == \
        neighbour_reference(val, books)["ref_neighbour_mean_code_sqerr_16"] > 0


def test_sampling_at_a_temperature_is_a_decision_and_is_seeded():
    from recovery import RecoveryError, parse_method

    assert parse_method("transformer:1:sample@0.7") == ("transformer", {"steps": 1, "decision": "sample", "temperature": 0.7})
    assert parse_method("transformer:1:sample")[1]["decision"] == "sample"
    for bad in ("transformer:1:mmse@0.5", "transformer:1:sample@x", "transformer:1:sample@0"):
        with pytest.raises(RecoveryError):
            parse_method(bad)


def test_sampled_fills_are_seeded_and_differ_from_the_mmse_choice(tmp_path):
    torch.manual_seed(0)
    model = MaskedTokenTransformer(TINY)
    idx = np.random.default_rng(0).integers(0, 64, (6, 8))
    miss = np.random.default_rng(1).random((6, 8)) < 0.5
    grid = lossy(idx, miss, 64)
    sampled = [TransformerRecovery(model, steps=1, decision="sample", temperature=1.0, seed=3).recover(grid, smooth_codebook())
               for _ in range(2)]
    mmse = TransformerRecovery(model, steps=1).recover(grid, smooth_codebook())
    assert np.array_equal(sampled[0], sampled[1])  # same seed, same draw
    assert not np.array_equal(sampled[0], mmse) and np.array_equal(sampled[0][~miss], idx[~miss])


def with_cells(grid, cells, of_code, level=16):
    from codec.tokens import CoarseCells

    return LossyTokenGrid(grid.grid, grid.missing, CoarseCells(level, cells, of_code))


@pytest.mark.parametrize("spec", ["none", "neighbour", "transformer:1", "transformer:3:argmax",
                                  "transformer:1:sample@1"])
def test_a_lost_token_whose_cell_arrived_is_filled_inside_its_cell(spec, tmp_path):
    torch.manual_seed(0)
    save_transformer(MaskedTokenTransformer(TINY), tmp_path / "t.safetensors", {"note": "test"})
    cb = smooth_codebook()
    of_code = np.arange(64) % 16  # 16 cells of 4 codes each
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 64, (8, 8))
    miss = rng.random((8, 8)) < 0.5
    cells = np.where(rng.random((8, 8)) < 0.7, of_code[idx], -1)  # 30% of the cells lost too
    grid = lossy(idx, miss, 64)
    method = get_method(spec, weights=tmp_path / "t.safetensors", precision="fp32")
    plain = method.recover(grid, cb)
    out = method.recover(with_cells(grid, cells, of_code), cb)
    known = miss & (cells >= 0)
    assert np.array_equal(out[~miss], idx[~miss])
    assert np.array_equal(of_code[out[known]], cells[known])
    assert (of_code[plain[known]] != cells[known]).any()  # the cells changed something
    # no cell known: the fill is the one without a coarse layer, to the bit
    assert np.array_equal(method.recover(with_cells(grid, np.full((8, 8), -1), of_code), cb), plain)


def test_in_cell_mmse_picks_the_cells_code_nearest_the_conditioned_posterior_mean():
    from recovery.transformer_recovery import mmse_codes, restrict_to_cells

    cb = smooth_codebook(k=8, d=2)
    of_code = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    probs = torch.softmax(torch.randn(5, 8, generator=torch.Generator().manual_seed(1)), -1)
    cells = torch.tensor([0, 1, -1, 1, 0])
    conditioned = restrict_to_cells(probs, cells, of_code)
    assert torch.allclose(conditioned.sum(-1), torch.ones(5))
    assert torch.equal(conditioned[2], probs[2])  # unknown cell: unchanged
    assert (conditioned[0, 4:] == 0).all() and (conditioned[1, :4] == 0).all()
    picked = mmse_codes(conditioned, cb, cells, of_code)
    for row in (0, 1, 3, 4):
        members = (of_code == cells[row]).nonzero()[:, 0]
        mean = conditioned[row] @ cb
        assert picked[row] == members[(cb[members] - mean).pow(2).sum(1).argmin()]
    assert picked[2] == mmse_codes(probs[2:3], cb)[0]


def test_coarse_cells_are_checked_against_the_grid():
    from codec.tokens import CoarseCells

    grid = lossy(np.zeros((4, 4), int), np.ones((4, 4), bool), 64)
    with pytest.raises(ValueError, match="outside"):
        CoarseCells(16, np.full((4, 4), 16), np.zeros(64))
    with pytest.raises(ValueError, match="shape"):
        with_cells(grid, np.zeros((4, 5), int), np.zeros(64, int))
    with pytest.raises(ValueError, match="covers 32 codes"):
        with_cells(grid, np.zeros((4, 4), int), np.zeros(32, int))
