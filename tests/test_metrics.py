"""The perceptual metrics: best value on an identical pair, monotone along a JPEG quality ladder,
offline, unavailable with a reason when their tool is missing; AVIF anchors at a byte budget."""

import json
import socket

import numpy as np
import pytest

from codec.images import builtin_images, save_rgb
from codec.metrics import quality
from codec import classical
from simnet.experiment import metrics
from simnet.experiment.frames import fit_frame
from simnet.experiment.metrics import METRICS, MetricError, MetricSet

PERCEPTUAL = list(METRICS)  # cvvdp runs only where torchvision loads (make iqa's environment)


def _need(name):
    reason = METRICS[name].why_unavailable()
    if reason:
        pytest.skip(f"{name} cannot run here: {reason}")


@pytest.fixture(scope="module")
def photos():
    return [fit_frame(rgb, (96, 128)) for _, rgb in builtin_images()[:2]]


@pytest.mark.parametrize("name", PERCEPTUAL)
def test_identical_pair_gets_the_best_value(name, photos):
    _need(name)
    scores = MetricSet([name])(photos[0], photos[0])
    assert scores[METRICS[name].field] == pytest.approx(METRICS[name].best, abs=1e-6)


@pytest.mark.parametrize("name", PERCEPTUAL)
def test_a_jpeg_quality_ladder_is_monotone(name, photos):
    _need(name)
    metric = MetricSet([name])
    for rgb in photos:
        values = [metric(rgb, classical.jpeg(rgb, q)[0])[METRICS[name].field] for q in (90, 40, 15, 3)]
        if not METRICS[name].lower_is_better:
            values = [-v for v in values]
        assert values == sorted(values) and values[0] < values[-1], values  # worse quality, larger error
    metric.close()


def test_metrics_started_beside_the_caller_give_the_same_figures(photos):
    names = [n for n in ("butteraugli", "ssimulacra", "flip") if not METRICS[n].why_unavailable()]
    if not names:
        pytest.skip("no perceptual metric can run here")
    metric = MetricSet(names)
    pairs = [(rgb, classical.jpeg(rgb, q)[0]) for rgb in photos for q in (10, 60)]
    pending = [metric.start(ref, dec) for ref, dec in pairs]  # all running at once, two references
    assert [p.result() for p in pending] == [metric(ref, dec) for ref, dec in pairs]
    metric.close()


def test_metrics_run_with_the_network_blocked(monkeypatch, photos):
    runnable = [name for name in PERCEPTUAL if not METRICS[name].why_unavailable()]
    if not runnable:
        pytest.skip("no perceptual metric can run here")
    chosen = MetricSet(runnable)  # created (models loaded) before the network goes away

    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    scores = chosen(photos[0], classical.jpeg(photos[0], 20)[0])
    assert set(scores) == {METRICS[n].field for n in runnable} and all(v > 0 for v in scores.values())


def test_a_missing_tool_is_reported_with_the_reason_never_filled(monkeypatch, photos):
    monkeypatch.setattr(metrics, "_binary", lambda name: None)
    chosen = MetricSet(["butteraugli", "ssimulacra"])
    assert "butteraugli_main not found" in chosen.unavailable["butteraugli"]
    assert not chosen and chosen(photos[0], photos[1]) == {}
    assert chosen.describe() == {"metrics": ["psnr", "ms_ssim"], "unavailable": chosen.unavailable}


def test_unknown_metric_names_are_refused():
    with pytest.raises(MetricError, match="unknown metric 'lpips2'"):
        MetricSet(["lpips2"])
    assert MetricSet("flip").names == ["psnr", "ms_ssim", "flip"]


def test_avif_at_a_byte_budget_takes_the_highest_quality_that_fits(photos):
    rgb = photos[0]
    budget = classical.downscaled(rgb, "AVIF", 2, 40)[1]
    decoded, nbytes, q = classical.at_rate(rgb, "AVIF", 2, budget)
    assert nbytes <= budget and q >= 40 and decoded.shape == rgb.shape
    if q < 100:
        assert classical.downscaled(rgb, "AVIF", 2, q + 1)[1] > budget
    # no quality fits a budget of 10 bytes: quality 0, over the budget
    assert classical.at_rate(rgb, "AVIF", 1, 10)[2] == 0


def test_eval_reports_the_chosen_metrics_and_the_avif_anchors(tmp_path, tiny_weights, photos):
    from simnet.cli import main

    _need("ssimulacra")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, rgb in enumerate(photos):
        save_rgb(rgb, folder / f"p{i}.png")
    out = tmp_path / "e.json"
    assert main(["eval", "--images", str(folder), "--codebook", "64", "--loss", "0,0.2", "--weights",
                 str(tiny_weights), "--metrics", "psnr,ms_ssim,ssimulacra", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["meta"]["metrics"]["metrics"] == ["psnr", "ms_ssim", "ssimulacra"]
    methods = {r["method"] for r in doc["records"]}
    assert {"avif", "down2-avif", "down3-avif", "down3-webp", "lossless", "neighbour"} <= methods
    assert all(isinstance(r["ssimulacra"], float) for r in doc["records"])
    assert all("ssimulacra" in row for row in doc["summary"])
    avif = [r for r in doc["records"] if r["method"] == "down2-avif"]
    lossless = {r["image"]: r for r in doc["records"] if r["method"] == "lossless"}
    for r in avif:  # the same bytes as the VQ file, or fewer
        assert r["fits_budget"] == (r["bpp_wire"] <= lossless[r["image"]]["bpp_wire"] + 1e-12)


def test_region_psnr_scores_only_the_region():
    from codec.metrics import region_psnr

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    out = ref.copy()
    region = np.zeros((32, 48), dtype=bool)
    region[:16, 16:32] = True
    out[region] = np.clip(out[region].astype(int) + 10, 0, 255).astype(np.uint8)
    inside = region_psnr(ref, out, region)
    err = (ref[region].astype(float) - out[region]) ** 2
    assert inside == pytest.approx(10 * np.log10(255**2 / err.mean()))
    assert region_psnr(ref, out, ~region) > 100  # untouched outside
    assert region_psnr(ref, out, np.zeros_like(region)) is None
