"""Bad inputs for the defenses beyond AT (issue 23), as rows of the CLI matrix (tests/test_cli_matrix.py):
each answers with one ``delusive: error:`` line naming the option, the value and what is allowed, and leaves
no output directory behind; plus the good rows that show a composite defense trains and is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import delusive.cli.train as cli_train
from test_cli_matrix import TRAIN, C, Case, _FastPlan, check_answer, invoke  # noqa: F401

OUT = ["--out", "o"]
SPEC = {"name": "d", "datasets": ["synthetic"], "train_subset": 100, "attacks": ["clean"],
        "attack_budget": {"norm": "linf", "eps": "0.2"}, "models": ["mlp"], "train": {"epochs": 1},
        "eval": {"steps": 1, "robust_subset": 10, "attack": "pgd"}}


def _spec(defenses: list) -> object:
    def setup(ws: Path, sh: dict) -> None:
        (ws / "spec.yaml").write_text(yaml.safe_dump({**SPEC, "defenses": defenses}))
    return setup


def _config_has_jpeg(ws: Path) -> None:
    cfg = json.loads((ws / "o" / "config.json").read_text())
    assert cfg["defense"]["name"] == "pgd_at"
    assert cfg["defense"]["transforms"] == [{"name": "jpeg", "params": {"quality": 20}}]


CASES = [
    C("d.unknown", [*TRAIN, "--defense", "jpg", *OUT], 2, r"argument --defense: invalid choice: 'jpg' \(.*unknown name",
      absent=("o",), verdict="extra"),
    C("d.order", [*TRAIN, "--defense", "pgd_at+jpeg", *OUT], 2, r"invalid choice: 'pgd_at\+jpeg'.*objectives come last",
      absent=("o",), verdict="extra"),
    C("d.twice", [*TRAIN, "--defense", "jpeg+jpeg", *OUT], 2, r"names a transform twice", absent=("o",),
      verdict="extra"),
    C("d.empty-part", [*TRAIN, "--defense", "jpeg+", *OUT], 2, r"invalid choice: 'jpeg\+'.*bad name", absent=("o",),
      verdict="extra"),
    C("d.quality", [*TRAIN, "--defense", "jpeg", "--defense-param", "quality=0", *OUT], 2,
      r"defense 'jpeg': quality must be an integer in \[1, 95\], got 0", absent=("o",), verdict="extra"),
    C("d.bits", [*TRAIN, "--defense", "bit_depth", "--defense-param", "bits=9", *OUT], 2,
      r"defense 'bit_depth': bits must be an integer in \[1, 8\], got 9", absent=("o",), verdict="extra"),
    C("d.grey-on-grey", [*TRAIN, "--defense", "grayscale", *OUT], 2,
      r"defense 'grayscale': needs RGB training images \(3 channels\), got 1 channel", absent=("o",),
      verdict="extra"),
    C("d.copies", [*TRAIN, "--defense", "ueraser", "--defense-param", "copies=0", *OUT], 2,
      r"defense 'ueraser': copies must be an integer >= 1, got 0", absent=("o",), verdict="extra"),
    C("d.alpha", [*TRAIN, "--defense", "mixup", "--defense-param", "alpha=-1", *OUT], 2,
      r"defense 'mixup': alpha must be a finite number > 0, got -1", absent=("o",), verdict="extra"),
    C("d.prob", [*TRAIN, "--defense", "cutmix", "--defense-param", "prob=2", *OUT], 2,
      r"defense 'cutmix': prob must be a number in \[0, 1\], got 2", absent=("o",), verdict="extra"),
    C("d.size", [*TRAIN, "--defense", "cutout", "--defense-param", "size=0", *OUT], 2,
      r"defense 'cutout': size must be an integer >= 1, got 0", absent=("o",), verdict="extra"),
    C("d.fit-epochs", [*TRAIN, "--defense", "ortho_proj", "--defense-param", "fit_epochs=0", *OUT], 2,
      r"defense 'ortho_proj': fit_epochs must be an integer >= 1, got 0", absent=("o",), verdict="extra"),
    C("d.unrouted", [*TRAIN, "--defense", "jpeg+pgd_at", "--defense-param", "beta=6", *OUT], 2,
      r"defense 'jpeg\+pgd_at': unknown parameter\(s\) beta; allowed: jpeg: quality; pgd_at: steps", absent=("o",),
      verdict="extra"),
    C("d.steps-on-transform", [*TRAIN, "--defense", "jpeg", "--steps", "3", *OUT], 2,
      r"defense 'jpeg': unknown parameter\(s\) steps", absent=("o",), verdict="extra"),
    C("d.bad-component", [*TRAIN, "--defense", "jpeg", "--defense-param", "ueraser.copies=2", *OUT], 2,
      r"parameter 'ueraser\.copies' names 'ueraser', which is not one of its components", absent=("o",),
      verdict="extra"),
    C("d.spec-unknown", ["sweep", "spec.yaml", "--out", "sw"], 2,
      r"spec\.yaml\.defenses\[0\]\.name: unknown defense 'jpeg\+nope'; expected one of .*jpeg\+pgd_at",
      setup=_spec([{"name": "jpeg+nope"}]), absent=("sw",), verdict="extra"),
    C("d.spec-grey", ["sweep", "spec.yaml", "--out", "sw"], 2,
      r"defenses\[0\] \(grey\): defense 'grayscale': needs RGB training images",
      setup=_spec([{"name": "grayscale", "label": "grey"}]), absent=("sw",), verdict="extra"),
    C("d.spec-param", ["sweep", "spec.yaml", "--out", "sw"], 2,
      r"defenses\[0\] \(jpeg\): defense 'jpeg': quality must be an integer in \[1, 95\], got 200",
      setup=_spec([{"name": "jpeg", "params": {"quality": 200}}]), absent=("sw",), verdict="extra"),
    # good: a composite defense trains, and its transform is in the run's recorded identity
    C("d.composite-ok", [*TRAIN, "--defense", "jpeg+pgd_at", "--norm", "linf", "--eps", "0.1", "--steps", "1",
                         "--defense-param", "quality=20", *OUT], 0, r"natural_accuracy",
      check=_config_has_jpeg, verdict="extra"),
]


@pytest.fixture(autouse=True)
def _fast_epoch_eval(monkeypatch):
    monkeypatch.setattr(cli_train, "EvalPlan", _FastPlan)


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DELUSIVE_DATA", raising=False)
    monkeypatch.setenv("DELUSIVE_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_defense_case(case: Case, ws: Path, capsys):
    if case.setup is not None:
        case.setup(ws, {})
    code, out, err = invoke(case.argv, capsys)
    check_answer(case, code, out, err)
    for rel in case.absent:
        assert not (ws / rel).exists(), f"{case.id}: {rel} exists after the command"
    if case.check is not None:
        case.check(ws)
