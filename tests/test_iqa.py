"""The optional pyiqa metrics: the plumbing with a stand-in module (the default environment has no
pyiqa), the error without it, and agreement with our own metrics where pyiqa is installed."""

import importlib.util
import json
import sys
import types

import numpy as np
import pytest
import torch

from codec.images import save_rgb
from simnet.cli import main

HAVE_PYIQA = importlib.util.find_spec("pyiqa") is not None


def stand_in_pyiqa():
    """Two metrics that run (a mean absolute difference under the names fsim and psnr) and one
    whose weights cannot be downloaded, as lpips behaves offline."""
    module = types.ModuleType("pyiqa")
    module.__version__ = "0.0-test"

    class MeanAbsDiff:
        metric_mode = "FR"

        def __call__(self, dist, ref):
            assert dist.shape == ref.shape and dist.dtype == torch.float32 and float(ref.max()) <= 1
            return (dist - ref).abs().mean((1, 2, 3))

    def create_metric(name, device="cpu"):
        if name == "lpips":
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
        return MeanAbsDiff()

    module.list_models = lambda: ["psnr", "fsim", "lpips"]
    module.create_metric = create_metric
    return module


@pytest.mark.skipif(HAVE_PYIQA, reason="pyiqa is installed here")
def test_iqa_without_pyiqa_is_one_line_and_status_2(tmp_path, capsys, tiny_weights, sample_rgb):
    (tmp_path / "imgs").mkdir()
    save_rgb(sample_rgb, tmp_path / "imgs" / "a.png")
    code = main(["eval", "--images", str(tmp_path / "imgs"), "--iqa", "fsim", "--weights", str(tiny_weights)])
    err = capsys.readouterr().err
    assert code == 2 and "pyiqa is not installed" in err and len(err.strip().splitlines()) == 1


def test_iqa_fields_means_and_unavailable_metrics(tmp_path, capsys, monkeypatch, tiny_weights, sample_rgb):
    monkeypatch.setitem(sys.modules, "pyiqa", stand_in_pyiqa())
    (tmp_path / "imgs").mkdir()
    save_rgb(sample_rgb, tmp_path / "imgs" / "a.png")
    save_rgb(sample_rgb[::-1].copy(), tmp_path / "imgs" / "b.png")
    args = ["eval", "--images", str(tmp_path / "imgs"), "-k", "64", "--loss", "0,0.2", "--methods", "none",
            "--json", str(tmp_path / "r.json"), "--weights", str(tiny_weights)]
    code = main(args + ["--iqa", "fsim,lpips,psnr"])
    _, err = capsys.readouterr()
    assert code == 0 and "lpips cannot run here" in err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["meta"]["iqa"]["metrics"] == ["fsim", "psnr"]
    assert "name resolution" in doc["meta"]["iqa"]["unavailable"]["lpips"]
    for rec in doc["records"]:
        assert "lpips" not in rec  # never filled in
        assert rec["fsim"] == rec["pyiqa_psnr"] and 0 < rec["fsim"] < 1
        assert rec["psnr"] > 5  # our own PSNR keeps its field
    rows = [r for r in doc["records"] if r["method"] == "none"]
    summary = next(r for r in doc["summary"] if r["method"] == "none")
    assert summary["fsim"] == pytest.approx(np.mean([r["fsim"] for r in rows]))
    code = main(args + ["--iqa", "fsim,bogus"])
    err = capsys.readouterr().err
    assert code == 2 and "'bogus' is not a pyiqa metric" in err


@pytest.mark.skipif(not HAVE_PYIQA, reason="pyiqa is not installed (it has its own environment: make iqa)")
def test_pyiqa_agrees_with_our_metrics():
    from codec.images import builtin_images
    from codec.metrics import quality
    from simnet.experiment.iqa import IQAMetrics

    photo = builtin_images()[0][1][:192, :256]  # MS-SSIM's five scales need 176 px or more
    rng = np.random.default_rng(0)
    noisy = np.clip(photo.astype(int) + rng.integers(-12, 13, photo.shape), 0, 255).astype(np.uint8)
    iqa = IQAMetrics(["psnr", "ms_ssim", "fsim", "vif", "gmsd"])
    assert not iqa.unavailable, iqa.unavailable  # the handcrafted metrics need no download
    scores = quality(photo, noisy, iqa)
    assert scores["pyiqa_psnr"] == pytest.approx(scores["psnr"], abs=0.05)
    # pyiqa's MS-SSIM is taken on luma (ours on RGB): close, not equal (0.981 vs 0.962 here)
    assert scores["pyiqa_ms_ssim"] == pytest.approx(scores["ms_ssim"], abs=0.03)
    assert 0 < scores["fsim"] <= 1 and 0 < scores["vif"] <= 1.5 and 0 <= scores["gmsd"] < 0.5
    same = quality(photo, photo, iqa)
    assert same["fsim"] == pytest.approx(1, abs=1e-3) and same["gmsd"] == pytest.approx(0, abs=1e-4)
