import subprocess
import sys

import numpy as np
import pytest

from codec.images import save_rgb
from codec.tokens import TokenGrid
from simnet.cli import main


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_image_codec_round_trip(tiny_codec, sample_rgb):
    grid = tiny_codec.encode(sample_rgb, 64)
    assert grid.shape == (5, 7) and grid.image_size == (72, 100)
    data = tiny_codec.to_bytes(grid)
    header, back = tiny_codec.from_bytes(data)
    assert np.array_equal(back.indices, grid.indices)
    out = tiny_codec.decode(back)
    assert out.shape == sample_rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out, tiny_codec.decode(grid))  # decoding is deterministic


def test_every_level_encodes(tiny_codec, sample_rgb):
    for k in tiny_codec.level_sizes:
        grid = tiny_codec.encode(sample_rgb, k)
        assert grid.indices.max() < k


def test_cli_encode_info_decode(tmp_path, capsys, tiny_weights, sample_rgb):
    save_rgb(sample_rgb, tmp_path / "in.png")
    w = ["--weights", str(tiny_weights)]
    code, out, _ = run(["encode", str(tmp_path / "in.png"), str(tmp_path / "a.vqb"), "-k", "16"] + w, capsys)
    assert code == 0 and "bpp" in out
    code, out, _ = run(["info", str(tmp_path / "a.vqb")], capsys)
    assert code == 0 and "codebook: 16" in out and "100" in out
    code, out, _ = run(["decode", str(tmp_path / "a.vqb"), str(tmp_path / "out.png")] + w, capsys)
    assert code == 0 and (tmp_path / "out.png").exists()


@pytest.mark.parametrize("make_args, fragment", [
    (lambda t, w: ["encode", str(t / "nope.png"), str(t / "o.vqb")] + w, "no such file"),
    (lambda t, w: ["encode", str(t / "text.png"), str(t / "o.vqb")] + w, "not a readable image"),
    (lambda t, w: ["encode", str(t / "in.png"), str(t / "o.vqb"), "-k", "100"] + w, "is not available"),
    (lambda t, w: ["decode", str(t / "text.png"), str(t / "o.png")] + w, "magic"),
    (lambda t, w: ["decode", str(t / "trunc.vqb"), str(t / "o.png")] + w, "CRC"),
    (lambda t, w: ["info", str(t / "nope.vqb")], "no such file"),
    (lambda t, w: ["encode", str(t / "in.png"), str(t / "o.vqb"), "--weights", str(t)], "missing"),
    (lambda t, w: ["encode", str(t / "in.png")], "Missing argument"),
    (lambda t, w: ["eval", "--images", str(t / "none"), "--loss", "0,2"] + w, "[0, 1]"),
    (lambda t, w: ["eval", "--images", str(t / "none")] + w, "not a folder"),
    (lambda t, w: ["bogus"], "No such command"),
    (lambda t, w: ["eval", "--images", str(t), "--methods", "neighbour,transformer:0"] + w, ">= 1"),
    (lambda t, w: ["eval", "--images", str(t), "--methods", "transformer:8:best"] + w, "decision must be"),
    (lambda t, w: ["mqtt", "receive", "--recovery", "magic"], "unknown recovery method"),
    (lambda t, w: ["train", "levels", "--tokenizer", str(t / "x"), "--out", str(t / "l"),
                   "--target-bits", "512=8"], "not among --sizes"),
    (lambda t, w: ["train", "tokenizer", "--out", str(t / "r"), "--loss-aware", "1",
                   "--decoder-only", w[1] + "/levels.safetensors"], "cannot go with --decoder-only"),
    (lambda t, w: ["train", "tokenizer", "--out", str(t / "r"), "--conceal"], "it needs --loss-aware"),
    (lambda t, w: ["eval", "--images", str(t), "-k", "16", "--coarse", "16"] + w, "--coarse: the coarse layer needs"),
    (lambda t, w: ["eval", "--images", str(t), "-k", "64", "--coarse", "256"] + w, "coarse level 256 is not available"),
])
def test_bad_input_gives_one_line_and_status_2(tmp_path, capsys, tiny_weights, tiny_codec,
                                               sample_rgb, make_args, fragment):
    save_rgb(sample_rgb, tmp_path / "in.png")
    (tmp_path / "text.png").write_text("hello, not an image")
    data = tiny_codec.to_bytes(tiny_codec.encode(sample_rgb, 64))
    (tmp_path / "trunc.vqb").write_bytes(data[:-3])
    code, out, err = run(make_args(tmp_path, ["--weights", str(tiny_weights)]), capsys)
    assert code == 2
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("simnet: error:"), err
    assert fragment in lines[0]


def test_console_script_exit_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "simnet.cli", "info", str(tmp_path / "x.vqb")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_eval_writes_results_json(tmp_path, capsys, tiny_weights, sample_rgb):
    import json

    (tmp_path / "imgs").mkdir()
    save_rgb(sample_rgb, tmp_path / "imgs" / "a.png")
    save_rgb(sample_rgb[:, ::-1].copy(), tmp_path / "imgs" / "b.png")
    out = tmp_path / "r.json"
    code, text, _ = run(["eval", "--images", str(tmp_path / "imgs"), "-k", "64", "--loss", "0,0.2",
                         "--json", str(out), "--weights", str(tiny_weights)], capsys)
    assert code == 0
    doc = json.loads(out.read_text())
    methods = {r["method"] for r in doc["records"]}
    assert {"lossless", "none", "neighbour", "jpeg-q1", "webp-q0", "down3-webp"} <= methods
    lossy = [r for r in doc["records"] if r["method"] == "none"]
    assert len(lossy) == 2 and all(abs(r["loss_rate_tokens"] - 0.2) < 0.03 for r in lossy)
    vq = [r for r in doc["records"] if r["method"] == "lossless"]
    assert all(r["bits_over_cross_entropy"] < 1.01 + 64 / (r["bpp_payload"] * 7200) for r in vq)
    assert doc["meta"]["model_checksums"]["codec"]
    for rec in doc["records"]:
        matched = rec["method"].startswith("down")
        if matched:  # matched rate: never above the VQ file's rate
            quality = rec.get("webp_quality", rec.get("avif_quality"))
            assert rec["bpp_wire"] <= vq[0]["bpp_wire"] + 1e-9 or quality == 0
    rows = {(r["method"], r["loss_rate_target"]) for r in doc["summary"]}
    assert ("neighbour", 0.2) in rows
    # same seed, same results, bit for bit (the meta's command line aside)
    run(["eval", "--images", str(tmp_path / "imgs"), "-k", "64", "--loss", "0,0.2",
         "--json", str(tmp_path / "r2.json"), "--weights", str(tiny_weights)], capsys)
    doc2 = json.loads((tmp_path / "r2.json").read_text())
    assert doc["records"] == doc2["records"] and doc["summary"] == doc2["summary"]


def test_eval_splits_psnr_into_lost_and_received_pixels(tmp_path, capsys, tiny_weights, sample_rgb):
    """psnr_lost and psnr_received score the lost tokens' pixels and the rest: on a picture of
    whole tokens their squared errors, weighted by the share of tokens lost, make up the PSNR."""
    import json

    (tmp_path / "imgs").mkdir()
    save_rgb(sample_rgb[:64, :96].copy(), tmp_path / "imgs" / "a.png")
    out = tmp_path / "r.json"
    code, text, _ = run(["eval", "--images", str(tmp_path / "imgs"), "-k", "64", "--loss", "0,0.25",
                         "--seeds", "2", "--no-baselines", "--json", str(out), "--weights", str(tiny_weights)], capsys)
    assert code == 0 and "PSNR lost" in text
    records = json.loads(out.read_text())["records"]
    mse = lambda p: 10 ** (-p / 10)
    lossy = [r for r in records if r["loss_rate_target"] > 0]
    assert len(lossy) == 4
    for r in lossy:
        share = r["loss_rate_tokens"]
        assert mse(r["psnr_lost"]) * share + mse(r["psnr_received"]) * (1 - share) == pytest.approx(mse(r["psnr"]), rel=1e-6)
    assert all(r.get("psnr_lost") is None for r in records if r["method"] == "lossless")


def test_eval_whole_packet_loss_through_interleaving(tmp_path, capsys, tiny_weights, sample_rgb):
    import json

    (tmp_path / "imgs").mkdir()
    big = np.concatenate([sample_rgb] * 3, axis=1)  # 5 x 19 tokens
    save_rgb(big, tmp_path / "imgs" / "a.png")
    out = tmp_path / "r.json"
    code, _, _ = run(["eval", "--images", str(tmp_path / "imgs"), "-k", "64", "--loss", "0.3",
                      "--burst", "2", "--seeds", "3", "--no-baselines", "--json", str(out),
                      "--weights", str(tiny_weights), "--rate-lambda", "0"], capsys)
    assert code == 0
    recs = [r for r in json.loads(out.read_text())["records"] if r["method"] == "neighbour"]
    assert len(recs) == 3
    for r in recs:  # whole packets of 64 tokens max: token loss follows packet loss
        assert r["loss_rate_packets"] is not None
        assert abs(r["loss_rate_tokens"] - r["loss_rate_packets"]) < 0.2


def test_the_colour_side_channel_from_encode_to_decode(tmp_path, capsys, tiny_weights, tiny_codec, sample_rgb):
    """--chroma 16 writes a version-2 file that info describes and decode applies: the decoded
    picture's block colours are the original's, to the quantisation step."""
    from codec import colour

    save_rgb(sample_rgb, tmp_path / "in.png")
    w = ["--weights", str(tiny_weights)]
    assert run(["encode", str(tmp_path / "in.png"), str(tmp_path / "p.vqb"), "-k", "64"] + w, capsys)[0] == 0
    code, out, _ = run(["encode", str(tmp_path / "in.png"), str(tmp_path / "c.vqb"), "-k", "64",
                        "--chroma", "16"] + w, capsys)
    assert code == 0 and "colour" in out
    plain, coloured = (tmp_path / "p.vqb").read_bytes(), (tmp_path / "c.vqb").read_bytes()
    assert len(coloured) > len(plain)
    code, out, _ = run(["info", str(tmp_path / "c.vqb")], capsys)
    assert code == 0 and "chroma_block: 16" in out and "version: 2" in out
    assert run(["decode", str(tmp_path / "c.vqb"), str(tmp_path / "c.png"), "--precision", "fp32"] + w, capsys)[0] == 0
    from codec.images import load_rgb

    decoded = load_rgb(tmp_path / "c.png")
    plane = colour.measure(sample_rgb, 16, 2)
    _, grid = tiny_codec.from_bytes(coloured)
    assert np.array_equal(decoded, tiny_codec.decode(grid, chroma=plane))
    cb = colour.block_means((decoded.astype(float) @ colour.TO_YCC.T)[..., 1], 16)
    plain_cb = colour.block_means((tiny_codec.decode(grid).astype(float) @ colour.TO_YCC.T)[..., 1], 16)
    assert np.abs(cb - plane.cb * 2).mean() < 0.25 * np.abs(plain_cb - plane.cb * 2).mean()
    code, _, err = run(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.vqb"), "--chroma", "48"] + w, capsys)
    assert code == 2 and "--chroma" in err
    code, _, err = run(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.vqb"), "--luma"] + w, capsys)
    assert code == 2 and "--luma" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(["encode", str(tmp_path / "in.png"), str(tmp_path / "l.vqb"), "-k", "64",
                        "--chroma", "16", "--luma"] + w, capsys)
    assert code == 0 and len((tmp_path / "l.vqb").read_bytes()) > len(coloured)
    code, out, _ = run(["info", str(tmp_path / "l.vqb")], capsys)
    assert "chroma_luma: True" in out


def test_eval_with_the_colour_side_channel_counts_its_bytes(tmp_path, capsys, tiny_weights, sample_rgb):
    import json

    (tmp_path / "imgs").mkdir()
    save_rgb(sample_rgb, tmp_path / "imgs" / "a.png")
    docs = {}
    for name, extra in (("plain", []), ("chroma", ["--chroma", "32", "--chroma-step", "4"])):
        out = tmp_path / f"{name}.json"
        assert run(["eval", "--images", str(tmp_path / "imgs"), "-k", "64", "--loss", "0,0.2",
                    "--metrics", "psnr,ms_ssim,ciede2000", "--json", str(out),
                    "--weights", str(tiny_weights)] + extra, capsys)[0] == 0
        docs[name] = {r["method"]: r for r in json.loads(out.read_text())["records"] if r["loss_rate_target"] == 0}
    plain, chroma = docs["plain"]["lossless"], docs["chroma"]["lossless"]
    pixels = sample_rgb.shape[0] * sample_rgb.shape[1]
    assert chroma["chroma_block"] == 32 and chroma["bits_colour"] > 0
    assert chroma["bpp_wire"] == pytest.approx(plain["bpp_wire"] + chroma["bits_colour"] / pixels)
    assert chroma["bits_over_cross_entropy"] == pytest.approx(plain["bits_over_cross_entropy"])
    assert chroma["ciede2000"] < plain["ciede2000"]
    # the baselines are matched to the larger file and carry no side-channel fields
    assert "chroma_block" not in docs["chroma"]["down3-avif"]
    for method, rec in docs["chroma"].items():
        if method.startswith("down") and rec.get("fits_budget", True) and rec.get("webp_quality", 1):
            assert rec["bpp_wire"] <= chroma["bpp_wire"] + 1e-9


def test_eval_under_packet_loss_can_lose_the_colour_too(tmp_path, capsys, tiny_weights, sample_rgb):
    import json

    (tmp_path / "imgs").mkdir()
    save_rgb(np.concatenate([sample_rgb] * 3, axis=1), tmp_path / "imgs" / "a.png")
    out = tmp_path / "r.json"
    assert run(["eval", "--images", str(tmp_path / "imgs"), "-k", "64", "--loss", "0.5", "--burst", "2",
                "--seeds", "6", "--no-baselines", "--chroma", "16", "--json", str(out), "--metrics", "psnr,ciede2000",
                "--weights", str(tiny_weights)], capsys)[0] == 0
    recs = [r for r in json.loads(out.read_text())["records"] if r["method"] == "none"]
    assert len(recs) == 6 and {r["colour_received"] for r in recs} == {True, False}


def test_a_transformer_beside_the_codec_weights_is_the_one_eval_uses(tmp_path, capsys, tiny_weights, sample_rgb,
                                                                       monkeypatch):
    """A weights folder can carry the transformer trained on its token grids: `--weights` then
    loads it (the shipped one would refuse this codec's codebooks), unless
    SIMNET_TRANSFORMER_WEIGHTS names another."""
    import json
    import shutil

    import torch

    from codec.safe_weights import file_checksum
    from codec.zoo import load_codec
    from recovery.transformer import MaskedTokenTransformer, TransformerConfig
    from recovery.transformer_recovery import WEIGHTS_ENV, save_transformer

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    folder = tmp_path / "codec"
    shutil.copytree(tiny_weights, folder)
    codec = load_codec(folder, precision="fp32")
    torch.manual_seed(0)
    model = MaskedTokenTransformer(TransformerConfig(levels=(16, 64), n_layer=1, n_head=2, n_embd=32,
                                                     max_side=16, code_dim=codec.levels[64].codebook.shape[1]))
    model.set_codebooks({k: codec.levels[k].codebook for k in (16, 64)})
    save_transformer(model, folder / "transformer.safetensors")
    (tmp_path / "imgs").mkdir()
    save_rgb(sample_rgb, tmp_path / "imgs" / "a.png")
    args = ["eval", "--images", str(tmp_path / "imgs"), "-k", "64", "--loss", "0.2", "--no-baselines",
            "--methods", "neighbour,transformer", "--weights", str(folder), "--precision", "fp32"]
    code, _, err = run(args + ["--json", str(tmp_path / "r.json")], capsys)
    assert code == 0, err
    checksums = json.loads((tmp_path / "r.json").read_text())["meta"]["model_checksums"]
    assert checksums["transformer"] == file_checksum(folder / "transformer.safetensors")
    # the shipped transformer, named explicitly, knows other codebooks: refused in one line
    from recovery.transformer_recovery import WEIGHTS

    monkeypatch.setenv(WEIGHTS_ENV, str(WEIGHTS))
    code, _, err = run(args, capsys)
    assert code == 2 and "codebook" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("burst", [None, 2.0])
def test_eval_with_a_coarse_layer_counts_its_bytes_and_keeps_lost_tokens_cells(tmp_path, capsys, tiny_weights,
                                                                               sample_rgb, burst):
    """--coarse 16 sends each token's cell at K = 16 again: the rate counts it, the baselines get
    its bytes, the records say how many lost tokens had their cell, and the cells are lost at
    about the same rate as the tokens (independently, or as whole packets through the channel)."""
    import json

    (tmp_path / "imgs").mkdir()
    save_rgb(np.concatenate([sample_rgb] * 3, axis=1), tmp_path / "imgs" / "a.png")
    docs = {}
    for coarse in ("0", "16"):
        out = tmp_path / f"r{coarse}.json"
        args = ["eval", "--images", str(tmp_path / "imgs"), "-k", "64", "--loss", "0,0.3", "--seeds", "4",
                "--methods", "none,neighbour", "--coarse", coarse, "--json", str(out), "--weights", str(tiny_weights)]
        code, text, _ = run(args + (["--burst", str(burst)] if burst else []), capsys)
        assert code == 0 and (("cells kept" in text) == (coarse == "16"))
        docs[coarse] = json.loads(out.read_text())["records"]
    plain = next(r for r in docs["0"] if r["method"] == "lossless")
    layered = next(r for r in docs["16"] if r["method"] == "lossless")
    assert layered["bits_coarse"] > 0 and layered["coarse_level"] == 16 and "bits_coarse" not in plain
    pixels = 72 * 300
    assert layered["bpp_payload"] == pytest.approx(plain["bpp_payload"] + layered["bits_coarse"] / pixels)
    assert layered["psnr"] == plain["psnr"]  # nothing lost: the coarse layer changes nothing
    for method in ("webp-q0", "down2-webp"):  # the baselines are matched to the larger budget
        a = next(r for r in docs["0"] if r["method"] == method)
        b = next(r for r in docs["16"] if r["method"] == method)
        assert "bits_coarse" not in b and b["bpp_wire"] >= a["bpp_wire"] - 1e-12
    lossy = [r for r in docs["16"] if r["loss_rate_target"] == 0.3 and r["method"] == "neighbour"]
    assert len(lossy) == 4 and all(0 <= r["cells_known"] <= 1 for r in lossy if r["loss_rate_tokens"] > 0)
    known = [r["cells_known"] for r in lossy if r["loss_rate_tokens"] > 0]
    if burst is None:  # each cell lost on its own, at the tokens' rate
        assert 0.3 < np.mean(known) < 0.95
    else:  # 95 cells fit one coarse packet: it arrived, or none did
        assert set(known) <= {0.0, 1.0} and 1.0 in known
