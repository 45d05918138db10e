"""Each loss model hits its closed-form mean loss rate and mean burst length over >= 100k packets."""

import numpy as np
import pytest

from simnet.network.loss_models import (Bernoulli, FourState, GilbertElliott, LossModelError, Trace,
                                parse_trace)
from simnet.network.channel import burst_histogram

N = 100_000


def draw(model, n=N):
    return np.fromiter((model.drop() for _ in range(n)), dtype=bool, count=n)


def mean_burst(flags):
    h = burst_histogram(flags)
    return sum(k * v for k, v in h.items()) / sum(h.values())


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.2, 0.4])
def test_bernoulli_rate_and_bursts(rate):
    flags = draw(Bernoulli(rate, seed=1))
    assert abs(flags.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / N)
    assert abs(mean_burst(flags) - 1 / (1 - rate)) < 0.03 / (1 - rate)


@pytest.mark.parametrize("rate, burst", [(0.05, 2.0), (0.2, 3.0), (0.2, 6.0), (0.4, 4.0)])
def test_gilbert_from_rate_and_burst(rate, burst):
    model = GilbertElliott.from_rate_and_burst(rate, burst, seed=2)
    assert model.mean_loss_rate == pytest.approx(rate)
    flags = draw(model)
    # correlated losses: the standard error grows with the burst length
    assert abs(flags.mean() - rate) < 0.012 * np.sqrt(burst)
    assert abs(mean_burst(flags) - burst) / burst < 0.05


def test_gilbert_elliott_general_parameters():
    model = GilbertElliott(p=0.05, r=0.3, one_minus_h=0.7, one_minus_k=0.02, seed=3)
    expected = (0.05 * 0.7 + 0.3 * 0.02) / 0.35
    assert model.mean_loss_rate == pytest.approx(expected)
    assert abs(draw(model).mean() - expected) < 0.006


def test_four_state_matches_its_stationary_distribution():
    model = FourState(p13=0.03, p31=0.4, p32=0.2, p23=0.5, p14=0.01, seed=4)
    expected = model.mean_loss_rate
    assert 0.03 < expected < 0.2
    assert abs(draw(model).mean() - expected) < 0.006


def test_four_state_reduces_to_bernoulli_like_isolated_losses():
    model = FourState(p13=0.0, p31=1.0, p14=0.1, seed=5)
    flags = draw(model)
    assert mean_burst(flags) == pytest.approx(1.0)  # state 4 always returns to 1
    assert abs(flags.mean() - model.mean_loss_rate) < 0.005


def test_same_seed_same_pattern_other_seed_other_pattern():
    a = draw(GilbertElliott.from_rate_and_burst(0.2, 3, seed=7), 5000)
    b = draw(GilbertElliott.from_rate_and_burst(0.2, 3, seed=7), 5000)
    c = draw(GilbertElliott.from_rate_and_burst(0.2, 3, seed=8), 5000)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_trace_flags_replay_and_cycle(tmp_path):
    (tmp_path / "t.txt").write_text("# comment\n0 1 1\n0 0\n")
    t = Trace(tmp_path / "t.txt")
    assert [t.drop() for _ in range(10)] == [False, True, True, False, False] * 2
    assert t.mean_loss_rate == pytest.approx(0.4)


def test_trace_intervals(tmp_path):
    (tmp_path / "t.txt").write_text("100 200\n500 550\n")
    t = Trace(tmp_path / "t.txt")
    assert [t.drop(s) for s in (0.05, 0.1, 0.15, 0.2, 0.52, 0.6)] == [False, True, True, False, True, False]


@pytest.mark.parametrize("text, fragment", [
    ("0 1 2\n", ":1:"), ("", "no data"), ("0 1\nhello\n", ":2:"), ("200 100\n", ":1:"),
    ("100 200\n150 300\n", ":2:")])
def test_bad_traces_name_the_line(tmp_path, text, fragment):
    (tmp_path / "t.txt").write_text(text)
    with pytest.raises(LossModelError, match=fragment):
        parse_trace(tmp_path / "t.txt")


@pytest.mark.parametrize("build", [
    lambda: Bernoulli(1.5, 0), lambda: GilbertElliott.from_rate_and_burst(0.2, 0.5),
    lambda: GilbertElliott.from_rate_and_burst(0.9, 1.0), lambda: GilbertElliott(0, 0),
    lambda: FourState(0.7, 0.5, p14=0.5)])
def test_impossible_parameters_are_errors(build):
    with pytest.raises(LossModelError):
        build()
