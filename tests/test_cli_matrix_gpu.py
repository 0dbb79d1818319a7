"""Bad-input rows for the options of issue 20 (``--deterministic``, ``--checkpoint-every``,
``--checkpoint-minutes``, ``poison --precision``, the spec keys, torchrun with sweeps): one line, the right exit
status, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_cli_matrix import C, check_answer, invoke

TRAIN = ["train", "--dataset", "synthetic", "--model", "mlp", "--train-subset", "60", "--epochs", "1",
         "--eval-attack", "pgd", "--eval-steps", "1", "--robust-subset", "10", "--val-size", "0", "--device", "cpu",
         "--out", "o"]
POISON = ["poison", "--attack", "P5", "--dataset", "synthetic", "--train-subset", "40", "--out", "o"]

CASES = [
    C("gpu.1", [*TRAIN, "--checkpoint-every", "0"], 2, r"--checkpoint-every must be an integer >= 1, got '0'"),
    C("gpu.2", [*TRAIN, "--checkpoint-every", "two"], 2, r"--checkpoint-every must be an integer >= 1"),
    C("gpu.3", [*TRAIN, "--checkpoint-minutes", "0"], 2, r"--checkpoint-minutes must be > 0"),
    C("gpu.4", [*TRAIN, "--checkpoint-minutes", "-5"], 2, r"--checkpoint-minutes"),
    C("gpu.5", [*POISON, "--precision", "fp16"], 2, r"--precision: invalid choice: 'fp16'"),
    C("gpu.6", [*TRAIN, "--deterministic=yes"], 2, r"--deterministic: ignored explicit argument 'yes'"),
    C("gpu.7", ["reproduce", "--preset", "demo", "--out", "o", "--set", "deterministic=3"], 2,
      r"deterministic: expected true or false, got 3"),
    C("gpu.8", ["reproduce", "--preset", "demo", "--out", "o", "--set", "craft_precision=fp16"], 2,
      r"craft_precision: expected fp32, bf16 or auto, got 'fp16'"),
    C("gpu.9", ["reproduce", "--preset", "demo", "--out", "o", "--set", "checkpoint_minutes=0"], 2,
      r"checkpoint_minutes: expected a number > 0 or null, got 0"),
    C("gpu.10", ["sweep", "--out", "o", "--checkpoint-every", "0", "spec.yaml"], 2, r"--checkpoint-every"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DELUSIVE_CACHE", str(tmp_path / "cache"))
    code, out, err = invoke(case.argv, capsys)
    check_answer(case, code, out, err)
    assert not Path("o").exists()  # refused before any output


def test_torchrun_sweep_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "4")
    case = C("gpu.11", ["reproduce", "--preset", "demo", "--out", "o"], 2, r"reproduce: not under torchrun")
    check_answer(case, *invoke(case.argv, capsys))
