from pathlib import Path

import pytest

from simnet.cli import main
from simnet.experiment.scenario import ScenarioError, load_scenario
from simnet.units import parse_rate, parse_size, parse_time

HERE = Path(__file__).parent
SCENARIOS = sorted((HERE.parent / "scenarios").glob("*.yaml"))
BROKEN = HERE / "broken_scenarios"
EXPECTED = [tuple(part.strip() for part in line.split("|", 1))
            for line in (BROKEN / "EXPECTED.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_units():
    assert parse_time("30 ms") == pytest.approx(0.030)
    assert parse_time("1.5s") == 1.5
    assert parse_rate("20 Mbit/s") == 20e6 and parse_rate("512 kbit/s") == 512e3
    assert parse_size("1200 B") == 1200 and parse_size(1200) == 1200 and parse_size("1 KiB") == 1024
    for bad in ("fast", "30 parsecs", "ms", "", None, True):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_shipped_scenarios_parse():
    names = {p.stem for p in SCENARIOS}
    assert {"lossy20", "clean", "bernoulli-sweep", "bursty-ge", "congested", "late", "trace"} <= names
    for path in SCENARIOS:
        s = load_scenario(path)
        assert s.name == path.stem


def test_lossy20_is_the_headline():
    s = load_scenario(HERE.parent / "scenarios" / "lossy20.yaml")
    assert s.channel.loss.rate == 0.2 and 0.2 in s.sweep.loss_rate
    assert s.channel.delay.base == pytest.approx(0.03) and s.channel.bandwidth == 20e6


def test_corpus_is_large_enough():
    assert len(EXPECTED) >= 20
    assert {name for name, _ in EXPECTED} == {p.name for p in BROKEN.glob("*.yaml")}


@pytest.mark.parametrize("name, fragment", EXPECTED, ids=[e[0] for e in EXPECTED])
def test_broken_scenario_gives_one_line(name, fragment):
    with pytest.raises(ScenarioError) as err:
        load_scenario(BROKEN / name)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(BROKEN / name))
    assert fragment in message, message


@pytest.mark.parametrize("name", [e[0] for e in EXPECTED[:6]] + ["10-not-a-mapping.yaml"])
def test_cli_exit_status_2(name, capsys):
    assert main(["run", str(BROKEN / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("simnet: error:")
