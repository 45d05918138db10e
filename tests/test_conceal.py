"""The concealing decoder: an untrained one is the tokenizer's decoder, nothing lost means the
lossless decode, the weights refuse another tokenizer, '+conceal' methods need the weights."""

import shutil

import numpy as np
import pytest
import torch

from codec.conceal import ConcealError, ConcealingDecoder, load_concealer, save_concealer
from codec.tokens import TokenGrid
from codec.zoo import load_codec
from recovery import conceals, get_method, parse_method
from simnet.cli import main


@pytest.fixture(scope="module")
def conceal_weights(tmp_path_factory, tiny_weights, tiny_codec):
    folder = tmp_path_factory.mktemp("conceal")
    for f in tiny_weights.iterdir():
        shutil.copy(f, folder / f.name)
    model = ConcealingDecoder.from_tokenizer(tiny_codec.model)
    with torch.no_grad():  # a concealer that does something with the mask
        model.post_quant_conv.weight[:, -1] = torch.linspace(-0.5, 0.5, model.post_quant_conv.weight.shape[0])[:, None, None]
    save_concealer(model, folder / "conceal.safetensors", tiny_codec.tokenizer_checksum, {"note": "test"})
    return folder


def test_an_untrained_concealer_is_the_plain_decoder(tiny_codec, sample_rgb):
    grid = tiny_codec.encode(sample_rgb, 64)
    lost = np.zeros(grid.shape, bool)
    lost[1:3, 2:4] = True
    plain = tiny_codec.decode(grid)
    tiny_codec.use_concealer(ConcealingDecoder.from_tokenizer(tiny_codec.model))
    try:
        assert np.array_equal(tiny_codec.decode(grid, lost), plain)
    finally:
        tiny_codec.concealer = None


def test_nothing_lost_is_the_lossless_decode_and_a_mask_changes_the_lost_region(conceal_weights, sample_rgb):
    codec = load_codec(conceal_weights, precision="fp32")
    assert codec.concealer is not None
    grid = codec.encode(sample_rgb, 64)
    plain = codec.decode(grid)
    assert np.array_equal(codec.decode(grid, np.zeros(grid.shape, bool)), plain)
    lost = np.zeros(grid.shape, bool)
    lost[2, 3] = True
    concealed = codec.decode(grid, lost)
    assert not np.array_equal(concealed, plain)


def test_concealer_refuses_another_tokenizer(conceal_weights):
    with pytest.raises(ConcealError, match="another tokenizer"):
        load_concealer(conceal_weights / "conceal.safetensors", "ab" * 32)


def test_conceal_suffix_parses_and_composes():
    assert conceals("transformer:1+conceal") and not conceals("neighbour")
    assert parse_method("neighbour+conceal") == ("neighbour", {})
    m = get_method("neighbour+conceal")
    assert m.conceal and m.name == "neighbour+conceal"


def test_a_conceal_method_without_weights_is_one_line(tmp_path, tiny_weights, capsys):
    from test_run_report import scenario_text

    (tmp_path / "s.yaml").write_text(scenario_text(tiny_weights).replace("[neighbour, none]", "[neighbour+conceal]"))
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path), "--no-pdf"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no concealing decoder" in err


def test_a_run_with_conceal_methods(tmp_path, conceal_weights):
    from test_run_report import scenario_text

    import json

    text = scenario_text(conceal_weights).replace("[neighbour, none]", "[neighbour, neighbour+conceal]")
    (tmp_path / "s.yaml").write_text(text)
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path), "--no-pdf"]) == 0
    doc = json.loads((tmp_path / "tiny.json").read_text())
    by = {}
    for r in doc["records"]:
        by.setdefault((r["image"], r["seed"], r["loss_rate_target"]), {})[r["method"]] = r
    for recs in by.values():
        if "neighbour" in recs:
            a, b = recs["neighbour"], recs["neighbour+conceal"]
            if a["loss_rate_tokens"] == 0:
                assert a["psnr"] == b["psnr"]  # nothing lost: the lossless decode
    assert any(recs["neighbour"]["psnr"] != recs["neighbour+conceal"]["psnr"]
               for recs in by.values() if "neighbour" in recs and recs["neighbour"]["loss_rate_tokens"] > 0)


def test_training_options_that_cannot_work_are_one_line(tmp_path, tiny_weights, capsys, monkeypatch):
    """A level the codec lacks, a level list that is not numbers, and transformer fills from a
    transformer trained for another codec: each refused before any training."""
    (tmp_path / "data" / "bsds500").mkdir(parents=True)
    monkeypatch.setenv("SIMNET_DATA", str(tmp_path / "data"))
    base = ["train", "conceal", "--out", str(tmp_path / "run"), "--weights", str(tiny_weights)]
    for extra, expected in ((["--train-levels", "99"], "--train-levels: no level 99"),
                            (["--train-levels", "a"], "--train-levels a: expected codebook sizes"),
                            (["--fill", "transformer"], "--fill transformer: the shipped transformer was trained for another codec")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run").exists()
