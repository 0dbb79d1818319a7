"""Bad inputs (and their good neighbours) of the evaluation attacks on the CLI, as rows like tests/test_cli_matrix.py:
the attack names of issue 19 (``fab-t``, ``square``, ``apgd``, ``autoattack``), the class counts they need, the
query budget and the precision option. Rows use that file's ``Case``/``C``/``invoke``/``check_answer``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_fixtures import write_png
from test_cli_matrix import C, Case, run_case

# a model of 2 classes on a 2-class folder dataset (a, b), and an untrained 10-class model on ``synthetic``
TWO = ["--dataset", "folder:f/two", "--split", "test", "--eval-norm", "linf", "--eval-eps", "0.1",
       "--robust-subset", "6", "--eval-steps", "2", "--eval-queries", "5", "--device", "cpu"]
TEN = ["--dataset", "synthetic", "--robust-subset", "10", "--eval-steps", "1", "--eval-queries", "3",
       "--device", "cpu"]


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    """A fresh working folder, as tests/test_cli_matrix.py's: never the user's data or cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DELUSIVE_DATA", raising=False)
    monkeypatch.setenv("DELUSIVE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _two_class(ws: Path) -> None:
    from delusive.models import create_model, save_model

    for split in ("train", "test"):
        for k, cls in enumerate(("a", "b")):
            for i in range(4):
                write_png(ws / "f" / "two" / split / cls / f"{i:03d}.png", np.full((28, 28), 60 + 120 * k + i,
                                                                                       dtype=np.uint8))
    spec = {"arch": "small-cnn", "num_classes": 2, "in_channels": 1, "image_size": 28}
    save_model(create_model("small-cnn", 2, 1, 28, seed=0), ws / "o" / "two" / "model.pt", spec, {})


def _ten_class(ws: Path) -> None:
    from delusive.models import create_model, save_model

    spec = {"arch": "small-cnn", "num_classes": 10, "in_channels": 1, "image_size": 28}
    save_model(create_model("small-cnn", 10, 1, 28, seed=0), ws / "o" / "ten" / "model.pt", spec,
               {"dataset": "synthetic"})


CASES: list[Case] = [
    C("x.eval-fab-t-2cls", ["eval", "o/two", *TWO, "--attack", "fab-t"], 0,
      r"evaluation: fab-t \(fab-t\), linf ε=0\.1, 2 steps", setup=lambda d, sh: _two_class(d), verdict="extra"),
    C("x.eval-apgd-t-2cls", ["eval", "o/two", *TWO, "--attack", "apgd-t"], 1,
      r"--eval-attack apgd-t: needs at least 4 classes \(the targeted DLR loss\), the dataset has 2; use apgd-ce, "
      r"apgd, fab-t, square or autoattack", setup=lambda d, sh: _two_class(d), verdict="extra"),
    C("x.eval-autoattack-2cls", ["eval", "o/two", *TWO, "--attack", "autoattack"], 0,
      r"evaluation: autoattack \(apgd-ce → fab-t → square\)", setup=lambda d, sh: _two_class(d),
      verdict="extra"),
    C("x.eval-apgd-2cls", ["eval", "o/two", *TWO, "--attack", "apgd"], 0, r"evaluation: apgd \(apgd-ce\)",
      setup=lambda d, sh: _two_class(d), verdict="extra"),
    C("x.eval-bad-attack", ["eval", "o/ten", *TEN, "--attack", "fab"], 2,
      r"--attack: invalid choice: 'fab' \(choose from '?pgd'?, '?apgd-ce'?, '?apgd-t'?, '?fab-t'?, '?square'?, "
      r"'?apgd'?, '?autoattack'?\)", setup=lambda d, sh: _ten_class(d), verdict="extra"),
    C("x.train-bad-eval-attack", ["train", "--dataset", "synthetic", "--eval-attack", "autoatack", "--out", "o/t"],
      2, r"--eval-attack: invalid choice: 'autoatack' \(choose from .*fab-t.*square.*apgd.*autoattack",
      absent=("o/t",), verdict="extra"),
    C("x.eval-queries-zero", ["eval", "o/ten", *TEN, "--attack", "square", "--eval-queries", "0"], 2,
      r"--eval-queries", setup=lambda d, sh: _ten_class(d), verdict="extra"),
    C("x.eval-queries-text", ["eval", "o/ten", *TEN, "--attack", "square", "--eval-queries", "many"], 2,
      r"--eval-queries", setup=lambda d, sh: _ten_class(d), verdict="extra"),
    C("x.eval-autoattack-spec", ["eval", "o/ten", *TEN, "--attack", "autoattack"], 0,
      r"evaluation: autoattack \(apgd-ce → apgd-t → fab-t → square\), linf ε=.*, 1 steps, 1 restart, .*3 queries, "
      r"fp32, n=10 test images \(seeded class-stratified, seed 0\), robust 95% CI \[",
      setup=lambda d, sh: _ten_class(d), verdict="extra"),
    C("x.eval-square-spec", ["eval", "o/ten", *TEN, "--attack", "square"], 0,
      r"evaluation: square \(square\), linf ε=[^,]*, 1 restart, step Square \(p_init 0\.8\), 3 queries, fp32",
      setup=lambda d, sh: _ten_class(d), verdict="extra"),
    C("x.eval-precision-bf16", ["eval", "o/ten", *TEN, "--attack", "pgd", "--precision", "bf16"], 0,
      r"fp32", warns=r"--precision bf16: ignored, robust evaluation always runs in fp32",
      setup=lambda d, sh: _ten_class(d), verdict="extra"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, ws: Path, capsys, monkeypatch):
    run_case(case, ws, {}, capsys, monkeypatch)
