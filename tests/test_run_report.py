import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simnet.cli import main


def scenario_text(weights: Path, extra: str = "") -> str:
    return f"""
name: tiny
source: {{images: builtin, count: 3, size: [48, 64], fps: 10}}
codec: {{codebook: 64, precision: fp32, weights: {weights}}}
packets: {{mtu: 200 B, max_tokens: 4, interleave: random, seed: 1}}
channel:
  bandwidth: 2 Mbit/s
  delay: {{base: 20 ms, jitter: 2 ms}}
  loss: {{model: gilbert_elliott, rate: 0.2, burst: 2}}
receiver: {{deadline: 150 ms, recovery: [neighbour, none]}}
sweep: {{loss_rate: [0, 0.3], seeds: 2}}
{extra}"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_weights):
    folder = tmp_path_factory.mktemp("run")
    (folder / "tiny.yaml").write_text(scenario_text(tiny_weights))
    assert main(["run", str(folder / "tiny.yaml"), "--out", str(folder / "a")]) == 0
    return folder


def test_results_json_has_the_spec_fields(tiny_run):
    doc = json.loads((tiny_run / "a" / "tiny.json").read_text())
    fields = ("scenario", "image", "seed", "loss_rate_target", "loss_rate_packets", "loss_rate_tokens",
              "method", "codebook", "bpp_payload", "bpp_wire", "psnr", "ms_ssim", "latency_ms_p50",
              "latency_ms_p95")
    for rec in doc["records"]:
        for f in fields:
            assert f in rec
    # 3 lossless + 3 frames x 2 rates x 2 seeds x 2 methods
    assert len(doc["records"]) == 3 + 3 * 2 * 2 * 2
    assert {r["method"] for r in doc["records"]} == {"lossless", "neighbour", "none"}
    assert doc["meta"]["model_checksums"]["codec"] and doc["meta"]["versions"]["torch"]
    lossy = [r for r in doc["records"] if r["loss_rate_target"] == 0.3]
    assert 0.05 < np.mean([r["loss_rate_packets"] for r in lossy]) < 0.7
    clean = [r for r in doc["records"] if r["loss_rate_target"] == 0 and r["method"] != "lossless"]
    ceiling = {r["image"]: r["psnr"] for r in doc["records"] if r["method"] == "lossless"}
    assert all(r["loss_rate_packets"] == 0 and r["psnr"] == ceiling[r["image"]] for r in clean)
    assert all(r["bpp_wire"] > r["bpp_payload"] for r in doc["records"])
    assert len(doc["runs"]) == 4 and "burst_lengths" in doc["runs"][0]
    # the PSNR split into lost tokens' pixels and received ones' (48x64: whole tokens) makes up the PSNR
    split = [r for r in lossy if r["method"] != "lossless" and 0 < r["loss_rate_tokens"] < 1]
    assert split
    mse = lambda p: 10 ** (-p / 10)
    for r in split:
        share = r["loss_rate_tokens"]
        assert mse(r["psnr_lost"]) * share + mse(r["psnr_received"]) * (1 - share) == pytest.approx(mse(r["psnr"]), rel=1e-6)
    assert all("psnr_lost" not in r for r in doc["records"] if r["loss_rate_tokens"] == 0)


def test_same_seed_same_json_bit_for_bit(tiny_run):
    assert main(["run", str(tiny_run / "tiny.yaml"), "--out", str(tiny_run / "b"), "--no-pdf"]) == 0
    assert (tiny_run / "a" / "tiny.json").read_bytes() == (tiny_run / "b" / "tiny.json").read_bytes()


def test_other_seed_other_losses(tiny_run):
    assert main(["run", str(tiny_run / "tiny.yaml"), "--out", str(tiny_run / "c"), "--seed", "9",
                 "--no-pdf"]) == 0
    a = json.loads((tiny_run / "a" / "tiny.json").read_text())["runs"]
    c = json.loads((tiny_run / "c" / "tiny.json").read_text())["runs"]
    assert [r["packets_lost"] for r in a] != [r["packets_lost"] for r in c]


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) not installed")
def test_pdf_pages_render_and_are_not_blank(tiny_run, tmp_path):
    pdf = tiny_run / "a" / "tiny.pdf"
    (tiny_run / "a" / "tiny.pdf").unlink()
    assert main(["report", str(tiny_run / "a" / "tiny.json")]) == 0  # re-render from the JSON
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "p")], check=True)
    pages = sorted(tmp_path.glob("p-*.png"))
    assert len(pages) >= 6  # title, quality, loss, rate/latency, two image grids
    for page in pages:
        pixels = np.asarray(Image.open(page).convert("L"), dtype=float)
        assert pixels.std() > 5, f"{page.name} looks blank"


def test_report_of_garbage_json(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{not json")
    assert main(["report", str(tmp_path / "x.json")]) == 2
    assert "not a results JSON" in capsys.readouterr().err


def test_sweep_merges_scenarios_in_parallel_deterministically(tmp_path, tiny_weights):
    small = scenario_text(tiny_weights).replace("count: 3", "count: 2").replace("seeds: 2", "seeds: 1")
    (tmp_path / "one.yaml").write_text(small.replace("name: tiny", "name: one"))
    (tmp_path / "two.yaml").write_text(small.replace("name: tiny", "name: two")
                                       .replace("rate: 0.2, burst: 2", "rate: 0.1, burst: 1"))
    files = [str(tmp_path / "one.yaml"), str(tmp_path / "two.yaml")]
    assert main(["sweep", *files, "--out", str(tmp_path / "p" / "s.json"), "--workers", "2"]) == 0
    assert main(["sweep", *files, "--out", str(tmp_path / "q" / "s.json"), "--workers", "1",
                 "--no-pdf"]) == 0
    doc = json.loads((tmp_path / "p" / "s.json").read_text())
    assert {r["scenario"] for r in doc["records"]} == {"one", "two"}
    assert len(doc["records"]) == 2 * (2 + 2 * 2 * 1 * 2)
    assert (tmp_path / "p" / "s.pdf").exists()
    q = json.loads((tmp_path / "q" / "s.json").read_text())
    assert doc["records"] == q["records"] and doc["summary"] == q["summary"]


def test_sweep_rejects_a_broken_scenario_before_starting(tmp_path, capsys, tiny_weights):
    (tmp_path / "ok.yaml").write_text(scenario_text(tiny_weights))
    (tmp_path / "bad.yaml").write_text("name: bad\nchannel: {bandwidth: fast}\n")
    assert main(["sweep", str(tmp_path / "ok.yaml"), str(tmp_path / "bad.yaml"),
                 "--out", str(tmp_path / "s.json")]) == 2
    assert "bad.yaml:2: channel.bandwidth" in capsys.readouterr().err


def test_sweep_of_a_missing_level_is_one_line_before_any_work(tmp_path, capsys, tiny_weights):
    text = scenario_text(tiny_weights).replace("codebook: 64", "level: 512")
    (tmp_path / "k512.yaml").write_text(text)
    assert main(["sweep", str(tmp_path / "k512.yaml"), "--out", str(tmp_path / "s.json"), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("simnet: error:")
    assert "k512.yaml: codec.level: level 512 is not available (have [16, 64])" in err
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "s-images").exists()


def test_run_of_a_missing_level_is_one_line(tmp_path, capsys, tiny_weights):
    (tmp_path / "k512.yaml").write_text(scenario_text(tiny_weights).replace("codebook: 64", "codebook: 512"))
    assert main(["run", str(tmp_path / "k512.yaml"), "--out", str(tmp_path)]) == 2
    assert "level 512 is not available" in capsys.readouterr().err


def test_level_key_and_its_older_name_read_alike(tmp_path, tiny_weights):
    from simnet.experiment.scenario import ScenarioError, load_scenario

    (tmp_path / "old.yaml").write_text(scenario_text(tiny_weights))
    (tmp_path / "new.yaml").write_text(scenario_text(tiny_weights).replace("codebook: 64", "level: 64"))
    assert load_scenario(tmp_path / "old.yaml").codec.level == load_scenario(tmp_path / "new.yaml").codec.level == 64
    (tmp_path / "both.yaml").write_text(scenario_text(tiny_weights).replace("codebook: 64", "codebook: 64, level: 16"))
    with pytest.raises(ScenarioError, match="both.yaml:4: codec"):
        load_scenario(tmp_path / "both.yaml")


def test_sweep_on_a_dask_cluster_equals_the_local_sweep(tmp_path, tiny_weights):
    pytest.importorskip("dask.distributed", reason="dask[distributed] is a test extra")
    from simnet.experiment.sweep import run_sweep

    small = scenario_text(tiny_weights).replace("count: 3", "count: 2").replace("seeds: 2", "seeds: 1")
    (tmp_path / "one.yaml").write_text(small.replace("name: tiny", "name: one"))
    (tmp_path / "two.yaml").write_text(small.replace("name: tiny", "name: two")
                                       .replace("rate: 0.2, burst: 2", "rate: 0.1, burst: 1"))
    files = [tmp_path / "one.yaml", tmp_path / "two.yaml"]
    run_sweep(files, tmp_path / "local" / "s.json", workers=1)
    # a real cluster: a scheduler and two worker processes, reached through its address
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        run_sweep(files, tmp_path / "dask" / "s.json", workers=2, scheduler=cluster.scheduler_address)
    local = json.loads((tmp_path / "local" / "s.json").read_text())
    dask = json.loads((tmp_path / "dask" / "s.json").read_text())
    assert len(local["records"]) == 2 * (2 + 2 * 2 * 1 * 2)
    assert dask["records"] == local["records"] and dask["summary"] == local["summary"]
    assert dask["runs"] == local["runs"]


def test_sweep_scheduler_local_starts_its_own_cluster(tmp_path, tiny_weights):
    pytest.importorskip("dask.distributed", reason="dask[distributed] is a test extra")
    small = scenario_text(tiny_weights).replace("count: 3", "count: 1").replace("seeds: 2", "seeds: 1")
    (tmp_path / "one.yaml").write_text(small.replace("name: tiny", "name: one"))
    assert main(["sweep", str(tmp_path / "one.yaml"), "--out", str(tmp_path / "s.json"),
                 "--scheduler", "local", "--workers", "2", "--no-pdf"]) == 0
    doc = json.loads((tmp_path / "s.json").read_text())
    assert len(doc["records"]) == 1 + 1 * 2 * 2


def test_first_page_says_the_scenario_and_the_result_in_words(tiny_run):
    from simnet.experiment.narrative import describe_scenario, headline

    doc = json.loads((tiny_run / "a" / "tiny.json").read_text())
    words = describe_scenario(doc["meta"]["scenario"])
    assert [line.split(":")[0] for line in words] == ["Source", "Codec", "Channel", "Receiver", "Sweep"]
    assert "3 frames of the builtin sample photos fitted to 64x48 px" in words[0]
    assert "2 Mbit/s, 20 ms delay +- 2 ms" in words[2] and "Gilbert-Elliott loss at 20%" in words[2]
    sentence = headline(doc["summary"], "tiny", doc["meta"]["scenario"])
    # the scenario's 0.2 is not among the sweep's rates (0, 0.3): the headline takes 0.3
    rows = {r["method"]: r for r in doc["summary"] if r["loss_rate_target"] == 0.3}
    best = max(rows.values(), key=lambda r: r["psnr"])
    assert sentence.startswith(f"At 30% target loss") and f"{best['method']} recovery gives {best['psnr']:.2f} dB" in sentence
    other = min(rows.values(), key=lambda r: r["psnr"])
    assert f"{best['psnr'] - other['psnr']:.2f} dB above {other['method']}" in sentence
    assert sentence.count(".") >= 1 and "\n" not in sentence


def test_compact_headers_cut_the_overhead_and_change_nothing_else(tmp_path, tiny_weights):
    (tmp_path / "full.yaml").write_text(scenario_text(tiny_weights))
    (tmp_path / "compact.yaml").write_text(scenario_text(tiny_weights).replace("seed: 1}", "seed: 1, header: compact}"))
    for name in ("full", "compact"):
        assert main(["run", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path / name), "--no-pdf"]) == 0
    full = json.loads((tmp_path / "full" / "tiny.json").read_text())
    compact = json.loads((tmp_path / "compact" / "tiny.json").read_text())
    assert compact["run_info"]["packet_overhead_bits"] == 80 < full["run_info"]["packet_overhead_bits"] == 224
    for a, b in zip(full["records"], compact["records"]):
        assert (a["psnr"], a["loss_rate_tokens"], a["bpp_payload"]) == (b["psnr"], b["loss_rate_tokens"], b["bpp_payload"])
        assert b["bpp_wire"] < a["bpp_wire"]


def test_same_seed_same_records_twice_and_through_sweep(tmp_path, tiny_weights):
    """Fresh processes, as a user runs them: `run --threads 1` twice and a two-worker sweep give
    the same records bit for bit (a sweep's jobs run one torch thread each; GroupNorm's reductions
    depend on the thread count, so a run with other threads matches only itself)."""
    import sys

    (tmp_path / "tiny.yaml").write_text(scenario_text(tiny_weights))
    cli = [sys.executable, "-m", "simnet.cli"]
    for name in ("a", "b"):
        subprocess.run(cli + ["run", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / name), "--no-pdf",
                              "--threads", "1"], check=True, capture_output=True)
    subprocess.run(cli + ["sweep", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "s" / "s.json"),
                          "--workers", "2", "--no-pdf"], check=True, capture_output=True)
    a = json.loads((tmp_path / "a" / "tiny.json").read_text())
    b = json.loads((tmp_path / "b" / "tiny.json").read_text())
    s = json.loads((tmp_path / "s" / "s.json").read_text())
    assert json.dumps(a["records"]) == json.dumps(b["records"]) and a["summary"] == b["summary"]
    key = lambda r: (r["loss_rate_target"], r["seed"], r["method"], r["image"], r.get("frame", -1))  # noqa: E731
    assert json.dumps(sorted(a["records"], key=key)) == json.dumps(sorted(s["records"], key=key))


def test_a_scenario_with_the_colour_side_channel(tmp_path, tiny_weights):
    """codec.chroma sends each frame's colour in spread copies: records say how many bits it
    took and whether it arrived, lossless frames carry it, a frame that lost every copy decodes
    without it, and colour costs bytes but lowers the colour error."""
    docs = {}
    for name, codec_line in (("plain", "codec: {codebook: 64, precision: fp32, weights: W}"),
                             ("colour", "codec: {codebook: 64, precision: fp32, weights: W, chroma: 16}")):
        text = scenario_text(tiny_weights).replace(
            f"codec: {{codebook: 64, precision: fp32, weights: {tiny_weights}}}",
            codec_line.replace("W", str(tiny_weights)))
        text = text.replace("max_tokens: 4,", "max_tokens: 4, colour_copies: 2,")
        text += "metrics: [psnr, ms_ssim, ciede2000]\n"
        (tmp_path / f"{name}.yaml").write_text(text.replace("name: tiny", f"name: {name}"))
        assert main(["run", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path), "--no-pdf"]) == 0
        doc = json.loads((tmp_path / f"{name}.json").read_text())
        docs[name] = doc["records"]
        if name == "colour":  # the report's first page says what was sent
            from simnet.experiment.narrative import describe_scenario

            config = doc["meta"]["scenario"]
            assert any("Cb/Cr means over 16-pixel blocks in 2 packets" in line for line in describe_scenario(config))
    plain = [r for r in docs["plain"] if r["method"] == "lossless"]
    coloured = [r for r in docs["colour"] if r["method"] == "lossless"]
    assert all("chroma_block" not in r for r in docs["plain"])
    assert all(r["chroma_block"] == 16 and r["colour_received"] and r["bits_colour"] > 0 for r in coloured)
    for p, c in zip(plain, coloured):
        assert c["bpp_wire"] > p["bpp_wire"] and c["ciede2000"] < p["ciede2000"]
    lossy = [r for r in docs["colour"] if r["loss_rate_target"] == 0.3]
    assert lossy and all("colour_received" in r for r in lossy)
    assert all(r["loss_rate_tokens"] > 0 for r in lossy if not r["colour_received"])
    # same channel seeds, same packet count: where a frame lost the same tokens in both runs, it
    # decodes exactly as without the side channel when every copy was lost, and with less colour
    # error when one arrived (this seed has frames of both kinds)
    key = lambda r: (r["frame"], r["seed"], r["method"])  # noqa: E731
    without = {key(r): r for r in docs["plain"] if r["loss_rate_target"] == 0.3}
    kinds = set()
    for r in lossy:
        other = without[key(r)]
        if other["loss_rate_tokens"] == r["loss_rate_tokens"]:
            kinds.add(r["colour_received"])
            if r["colour_received"]:
                assert r["ciede2000"] < other["ciede2000"]
            else:
                assert r["ciede2000"] == pytest.approx(other["ciede2000"])
    assert kinds == {True, False}


def test_a_scenario_with_a_coarse_layer(tmp_path, capsys, tiny_weights):
    """packets.coarse sends each token's cell at a smaller level in packets of its own, after
    the frame's tokens: the wire carries more bytes, records say how many and what share of the
    lost tokens kept their cell, the first page says it, and the fills stay in the cells (the
    same loss on the same frame decodes otherwise than without the layer)."""
    from simnet.experiment.narrative import describe_scenario

    docs = {}
    for name, extra in (("plain", ""), ("coarse", ", coarse: 16, header: compact")):
        text = scenario_text(tiny_weights).replace("seed: 1}", "seed: 1" + (extra or ", header: compact") + "}")
        text = text.replace("codebook: 64", "level: 64").replace("name: tiny", f"name: {name}")
        (tmp_path / f"{name}.yaml").write_text(text)
        assert main(["run", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path), "--no-pdf"]) == 0
        docs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    doc = docs["coarse"]
    assert any("a coarse layer: each token's cell at K = 16" in line for line in describe_scenario(doc["meta"]["scenario"]))
    assert doc["run_info"]["coarse_bytes_per_frame"] > 0 and docs["plain"]["run_info"]["coarse_bytes_per_frame"] == 0
    lossless = [r for r in doc["records"] if r["method"] == "lossless"]
    plain_lossless = [r for r in docs["plain"]["records"] if r["method"] == "lossless"]
    for a, b in zip(plain_lossless, lossless):
        assert b["bits_coarse"] > 0 and b["bpp_wire"] > a["bpp_wire"] and b["psnr"] == a["psnr"]
    lossy = [r for r in doc["records"] if r["loss_rate_target"] == 0.3 and r["loss_rate_tokens"] > 0]
    assert lossy and all(0 <= r["cells_known"] <= 1 for r in lossy)
    assert any(r["cells_known"] > 0 for r in lossy)
    mean = [row for row in doc["summary"] if row["loss_rate_target"] == 0.3 and row["method"] == "neighbour"]
    assert mean[0]["cells_known"] == pytest.approx(np.mean([r["cells_known"] for r in lossy if r["method"] == "neighbour"]))
    assert "cells kept" in capsys.readouterr().out  # the printed summary says it
    assert main(["report", str(tmp_path / "coarse.json"), "--out", str(tmp_path / "coarse.pdf")]) == 0
    if shutil.which("pdftotext"):  # the PDF's summary table too
        text = subprocess.run(["pdftotext", "-l", "1", str(tmp_path / "coarse.pdf"), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "cells kept" in text


def test_a_coarse_layer_is_refused_in_one_line_where_it_cannot_work(tmp_path, capsys, tiny_weights):
    (tmp_path / "k16.yaml").write_text(scenario_text(tiny_weights).replace("codebook: 64", "level: 16")
                                       .replace("seed: 1}", "seed: 1, coarse: 16}"))
    assert main(["run", str(tmp_path / "k16.yaml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "k16.yaml: packets.coarse: the coarse layer needs codec.level 64" in err
    (tmp_path / "k256.yaml").write_text(scenario_text(tiny_weights).replace("seed: 1}", "seed: 1, coarse: 256}"))
    assert main(["sweep", str(tmp_path / "k256.yaml"), "--out", str(tmp_path / "s.json"), "--workers", "1"]) == 2
    assert "coarse level 256 is not available" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


def test_the_runner_keeps_lossless_decodes_within_a_budget_and_makes_the_rest_again():
    """A long run keeps no frame's pixels: the source is read again for each loss point, and the
    lossless decodes stay within the budget (the oldest go first), made again when asked for."""
    from types import SimpleNamespace

    from simnet.experiment.runner import EncodedFrame, Pictures, RunTimings

    made = []

    class FakeCodec:
        def lossless(self, sent):
            made.append(sent.index)
            return np.full((8, 8, 3), sent.index, dtype=np.uint8)  # 192 bytes

    frames = [EncodedFrame(f"f{i}", SimpleNamespace(index=i), [], {}) for i in range(5)]
    source = lambda: ((f.name, np.zeros((8, 8, 3), np.uint8)) for f in frames)  # noqa: E731
    pictures = Pictures(source, FakeCodec(), RunTimings(), budget=2 * 192)
    first = [lossless[0, 0, 0] for _, _, lossless in pictures.walk(frames)]
    assert first == [0, 1, 2, 3, 4] and made == [0, 1, 2, 3, 4]
    assert list(pictures._kept) == ["f3", "f4"]  # two decodes fit the budget
    again = [lossless[0, 0, 0] for _, _, lossless in pictures.walk(frames)]
    assert again == first and made == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
