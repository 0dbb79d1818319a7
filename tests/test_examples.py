"""Every script in examples/ runs, on tiny data, exactly as a user would run it (through the command line or
``python examples/...``); a new script without a row here fails the first test."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
COVERED = {"make_toy_folder.py", "01_poison_your_folder.sh", "02_train_with_a_defense.sh", "03_evaluate.sh",
           "04_inspect.sh", "own_model_and_loader.py"}


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
            "DELUSIVE": f"{sys.executable} -m delusive", "DELUSIVE_PROGRESS": "0", "OMP_NUM_THREADS": "1",
            "DELUSIVE_CACHE": str(tmp_path / "cache")}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{args} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


def test_every_example_is_covered():
    assert {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")} == COVERED


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """examples 01-03 in order on an 80-image toy folder: (working folder, environment, outputs)."""
    tmp_path = tmp_path_factory.mktemp("examples")
    env = {**_env(tmp_path), "EPOCHS": "1",
           "POISON_ARGS": "--crafting-epochs 1 --attack-param steps=2",
           "TRAIN_ARGS": "--val-size 0 --robust-subset 8 --eval-steps 2", "AT_ARGS": "--steps 1",
           "EVAL_ARGS": "--robust-subset 8 --eval-steps 2"}
    _run([sys.executable, str(EXAMPLES / "make_toy_folder.py"), "toy", "--images", "80"], tmp_path, env)
    outs = [_run(["bash", str(EXAMPLES / name), *args], tmp_path, env) for name, args in (
        ("01_poison_your_folder.sh", ("toy", "work")), ("02_train_with_a_defense.sh", ("toy", "work")),
        ("03_evaluate.sh", ("work",)))]
    return tmp_path, env, outs


def test_folder_examples_run_in_order(folder_run):
    tmp_path, _, (poison, train, evaluate) = folder_run
    assert "linf eps=8/255" in poison and "cpu schedule" in poison and "OK " in poison
    assert "train time" in train and "evaluation time" in train
    assert "circle" in evaluate and "natural" in evaluate and (tmp_path / "work" / "at-eval.json").exists()


def test_inspect_example(folder_run):
    tmp_path, env, _ = folder_run
    out = _run(["bash", str(EXAMPLES / "04_inspect.sh"), "toy", "work"], tmp_path, env)
    assert "work/p1: " in out and (tmp_path / "work" / "inspect-p1" / "report.json").exists()


def test_own_model_example_runs(tmp_path):
    out = _run([sys.executable, str(EXAMPLES / "own_model_and_loader.py"), "--images", "128", "--epochs", "1",
                "--eval-images", "16"], tmp_path, _env(tmp_path))
    assert "adversarially trained on P1: natural" in out and "(16, 1, 16, 16)" in out
