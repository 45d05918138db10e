"""Loss models, recovery methods and stream codecs are found by name: adding one is its own code
and one registration line, and every path (scenario checks, the run, the report's words) then
knows it. Shown with toy ones, run end to end."""

import json

import numpy as np
import pytest

from recovery import RECOVERIES, RecoveryKind, get_method, register_recovery
from simnet.cli import main
from simnet.experiment.narrative import describe_scenario
from simnet.network.loss_models import LOSS_MODELS, LossModelKind, register_loss_model
from simnet.stream import CODECS, make_codec


class EveryNth:
    """A toy loss model with a parameter of its own: every `every`-th packet is lost, from the first."""

    def __init__(self, every: int):
        self.every, self.n = every, 0

    def drop(self, t=None) -> bool:
        self.n += 1
        return self.n % self.every == 1 % self.every


class FirstCode:
    """A toy recovery: every lost token becomes code 0."""
    name, conceal = "first-code", False

    def recover(self, lossy, codebook, history=None):
        out = lossy.grid.indices.copy()
        out[lossy.missing] = 0
        return out


@pytest.fixture
def toys():
    def check(cfg):
        if "every" not in cfg.params:
            raise ValueError("every_nth needs params.every")

    register_loss_model("every_nth", LossModelKind(lambda cfg, rate, seed, base_dir: EveryNth(int(cfg.params["every"])),
                                                   check, lambda loss: f"one packet in {loss['params']['every']:g} lost"))
    register_recovery("first-code", RecoveryKind(FirstCode))
    yield
    del LOSS_MODELS["every_nth"], RECOVERIES["first-code"]


def test_a_toy_loss_model_and_recovery_run_end_to_end(toys, tmp_path, tiny_weights):
    (tmp_path / "toy.yaml").write_text(f"""
name: toy
source: {{images: builtin, count: 2, size: [48, 64], fps: 10}}
codec: {{level: 64, precision: fp32, weights: {tiny_weights}}}
packets: {{mtu: 200 B, max_tokens: 2}}
channel: {{loss: {{model: every_nth, params: {{every: 2}}}}}}
receiver: {{recovery: [first-code, none]}}
""")
    assert main(["run", str(tmp_path / "toy.yaml"), "--out", str(tmp_path), "--no-pdf"]) == 0
    results = json.loads((tmp_path / "toy.json").read_text())
    lossy = [r for r in results["records"] if r["method"] == "first-code"]
    assert lossy and all(r["loss_rate_packets"] == pytest.approx(0.5, abs=0.1) for r in lossy)
    assert all(r["loss_rate_tokens"] > 0.3 and r["token_accuracy"] is not None for r in lossy)
    assert any("one packet in 2 lost" in line for line in describe_scenario(results["meta"]["scenario"]))
    assert isinstance(get_method("first-code"), FirstCode)


def test_unknown_names_are_refused_with_what_there_is(toys, tmp_path, tiny_weights):
    (tmp_path / "bad.yaml").write_text("name: bad\nchannel: {loss: {model: every_third}}\n")
    assert main(["run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path)]) == 2
    (tmp_path / "bad.yaml").write_text("name: bad\nchannel: {loss: {model: every_nth}}\n")
    assert main(["run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path)]) == 2
    with pytest.raises(ValueError, match="registered twice"):
        register_recovery("first-code", RecoveryKind(FirstCode))
    with pytest.raises(ValueError, match="registered twice"):
        register_loss_model("every_nth", LOSS_MODELS["none"])


def test_every_codec_is_looked_up_by_name_and_implements_the_interface(tiny_codec):
    assert {"vq", "avif", "webp", "jpeg"} <= set(CODECS)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for name in CODECS:
        codec = (make_codec(name, image_codec=tiny_codec, level=64) if name == "vq"
                 else make_codec(name, piece=400))
        frame = codec.encode(0, rgb)
        assert frame.units and frame.choice and frame.payload_bytes > 0
        assert all(hasattr(codec, attr) for attr in ("encode", "fit", "reassembly"))
        with pytest.raises(ValueError, match="unknown codec"):
            make_codec("h265")
