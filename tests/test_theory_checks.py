"""Theorems 1-3 as checks: they pass on a large grid, and fail when fed a wrong formula."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from delusive.cli import theory as cli_theory
from delusive.theory import checks, gaussian


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="delusive")
    cli_theory.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_theorems_hold_on_a_grid_of_thousands_of_points():
    eta, d, sigma = checks.default_grid()
    assert eta.size >= 1000
    assert eta.min() > 0 and eta.max() < 1 / 3 and d.max() >= 1e9
    report = checks.check_theorems(eta, d, sigma)
    assert report.ok, checks.format_report(report)
    assert report.n_points == eta.size
    assert {r.theorem for r in report.results} == {"Thm 1", "Thm 2", "Thm 3"}
    assert len(report.results) == 2 + 2 + 2 * 5  # Thm 2 (2), Thm 3 (2), Thm 1: 5 classifiers x 2 delusive D


def test_ordering_is_resolved_where_every_probability_rounds_to_one():
    report = checks.check_theorems([0.01, 0.1, 0.3], [1e8, 1e9, 1e9], [1.0, 1.0, 0.1])
    assert report.ok, checks.format_report(report)
    z = gaussian.five_model_z(1.0, 0.01, 1e8)
    assert gaussian.accuracy_from_z(z["f_D"]) == gaussian.accuracy_from_z(z["f_D2"]) == 1.0


def _unnormalised_natural_z(w, mean, sigma):
    """A wrong formula: forgets to divide the margin by ||w||_2."""
    return np.asarray(w.dot(mean)) / sigma


def _wrong_sign_adversarial_z(w, mean, sigma, eps):
    """A wrong formula: the adversary *helps* (+ eps ||w||_1)."""
    return (w.dot(mean) + eps * w.norm1()) / (sigma * w.norm2())


def test_check_reports_violations_for_a_wrong_natural_formula():
    report = checks.check_theorems(*checks.default_grid(n_eta=10, sigmas=(1.0,)),
                                   natural_z_fn=_unnormalised_natural_z)
    assert not report.ok
    bad = {r.statement for r in report.results if not r.ok}
    assert "R(f_D, D) < R(f_D2, D)" in bad  # 1 + t > 1 + 3t is false without the normalisation
    assert "VIOLATED" in checks.format_report(report)


def test_check_reports_violations_for_a_wrong_adversarial_formula():
    report = checks.check_theorems(*checks.default_grid(n_eta=10, sigmas=(1.0,)),
                                   adversarial_z_fn=_wrong_sign_adversarial_z)
    assert not report.ok
    assert all(r.theorem == "Thm 1" for r in report.results if not r.ok)


def test_cli_check_passes_and_prints_a_table(capsys):
    assert _cli(["theory", "check", "--n-eta", "8", "--d-max", "1e9", "--sigmas", "0.5,1,4"]) == 0
    out = capsys.readouterr().out
    assert "all theorems hold" in out and "Thm 1" in out and "Thm 2" in out and "Thm 3" in out
    assert "8 values" in out


def test_cli_check_exits_nonzero_when_the_formula_is_wrong(monkeypatch, capsys):
    monkeypatch.setattr(gaussian, "natural_z", _unnormalised_natural_z)
    assert _cli(["theory", "check"]) == 1
    assert "VIOLATED" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "needle"), [
    (["theory", "check", "--eta-max", "0.5"], "--eta-max must be in (0, 1/3)"),
    (["theory", "check", "--eta-min", "0.2", "--eta-max", "0.1"], "--eta-min (0.2) must be <= --eta-max (0.1)"),
    (["theory", "check", "--sigmas", "1,-2"], "--sigmas must all be > 0"),
    (["theory", "simulate", "--eta", "0.4"], "--eta must be in (0, 1/3), got 0.4"),
    (["theory", "simulate", "--repeats", "0"], "--repeats must be an integer >= 1, got 0"),
    (["theory", "figure2", "--out", "unused", "--sigma", "-1"], "--sigma must be > 0, got -1"),
    (["theory", "figure2", "--out", "unused", "--d-min", "10", "--d-max", "5"], "--d-max must be > --d-min"),
])
def test_cli_usage_errors_name_the_option_and_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_unparsable_number_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        _cli(["theory", "simulate", "--eta", "abc"])
    assert e.value.code == 2
    assert "--eta" in capsys.readouterr().err
