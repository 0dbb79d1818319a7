"""Finite-sample standard / adversarial linear training against the closed form; the figure commands."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest

from delusive.cli import theory as cli_theory
from delusive.theory import gaussian
from delusive.theory.simulate import SimulationConfig, fit_linear, run_simulation, sample_training_sets


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="delusive")
    cli_theory.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_delusive_training_sets_are_eps_close_and_have_the_shifted_means():
    rng = np.random.default_rng(0)
    y, x, x1, x2 = sample_training_sets(20, 40_000, 1.0, 0.1, rng)
    assert np.abs(x1 - x).max() == pytest.approx(0.2) and np.abs(x2 - x).max() == pytest.approx(0.2)
    assert np.all(x1[:, 0] == x[:, 0])  # the robust feature is untouched
    for xs, m in ((x, 0.1), (x1, -0.1), (x2, 0.3)):
        mean = (y[:, None] * xs).mean(0)
        assert mean[0] == pytest.approx(1.0, abs=0.02) and mean[1:].mean() == pytest.approx(m, abs=0.005)


def test_adversarial_training_drops_the_flipped_features_and_shrinks_the_amplified_ones():
    rng = np.random.default_rng(1)
    y, _, x1, x2 = sample_training_sets(50, 5_000, 1.0, 0.1, rng)
    w1 = fit_linear(x1, y, eps=0.2)
    assert np.abs(w1[1:]).max() <= 1e-6 * abs(w1[0])  # f_D1_rob: robust feature only
    w2 = fit_linear(x2, y, eps=0.2)
    ratio = w2[1:].mean() / w2[0]  # soft-threshold: eta / (1 - 2 eta) = 0.125
    assert ratio == pytest.approx(0.125, abs=0.02)
    w2_std = fit_linear(x2, y)
    assert w2_std[1:].mean() / w2_std[0] == pytest.approx(0.3, abs=0.03)  # Bayes: 3 eta


def test_simulated_training_lands_within_two_points_of_the_closed_form():
    rows = run_simulation(SimulationConfig(sigma=1.0, eta=0.1, ds=(100,), repeats=2, n_test=20_000, seed=3))
    assert {r.model for r in rows} == set(gaussian.MODEL_NAMES)
    for r in rows:
        assert abs(r.gap) < 0.02, r
        assert 0 < r.se < 0.02
    closed = {r.model: r.closed_form for r in rows}  # a discriminative range, not saturated
    assert closed["f_D1"] == pytest.approx(0.5) and 0.8 < closed["f_D1_rob"] < 0.9 < closed["f_D"] < 0.95


def test_cli_figure2_writes_png_and_csv_with_the_known_values(tmp_path, capsys):
    assert _cli(["theory", "figure2", "--out", str(tmp_path), "--points", "25", "--d-max", "1e5"]) == 0
    assert (tmp_path / "figure2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "figure2.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if float(r["d"]) == 10_000)
    assert float(row["acc_f_D"]) == pytest.approx(0.92135, abs=1e-5)
    assert float(row["acc_f_D1"]) == pytest.approx(0.5, abs=1e-9)
    assert float(row["acc_f_D1_rob"]) == pytest.approx(0.84134, abs=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure2.csv", "figure2.png"]  # no temp files left
    out = capsys.readouterr().out
    assert "0.9214" in out and "0.5000" in out and "0.8413" in out


def test_cli_simulate_small_run_writes_figure_and_table(tmp_path, capsys):
    argv = ["theory", "simulate", "--d", "5,20", "--n-train", "2000", "--n-test", "4000", "--repeats", "2",
            "--out", str(tmp_path)]
    assert _cli(argv) == 0
    out = capsys.readouterr().out
    assert "closed form" in out and "largest |gap|" in out
    assert (tmp_path / "simulate.png").read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "simulate.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and {r["model"] for r in rows} == set(gaussian.MODEL_NAMES)
