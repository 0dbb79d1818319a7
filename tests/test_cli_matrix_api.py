"""Bad input to the options of the Python-API / your-folder work (--schedule, --test-fraction, --split-seed,
--json, --format hf, import of an hf folder, --log), in the matrix's form: each row is one command, its exit
status and the one error line it must print."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from delusive.data import make_synthetic
from test_cli_matrix import TRAIN, C, Case, _fast_epoch_eval, check_answer, invoke, shared, ws  # noqa: F401

EVAL = ["--attack", "pgd", "--eval-steps", "1", "--robust-subset", "10", "--device", "cpu"]


def _pets(w: Path, sh: dict[str, Path]) -> None:
    ds = make_synthetic(40, 4, (1, 28, 28), seed=0)
    for i in range(40):
        d = w / "pets" / ("cat", "dog", "fox", "owl")[ds.y[i]]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.x[i, 0]).save(d / f"{i:03d}.png")


def _hf(edit=None):
    def setup(w: Path, sh: dict[str, Path]) -> None:
        from delusive.attacks.hf import export_hf

        export_hf(sh["art"], w / "hf")
        if edit is not None:
            edit(w / "hf")
    return setup


def _edit_row(field: int, value: str):
    def edit(hf: Path) -> None:
        meta = hf / "train" / "metadata.csv"
        lines = meta.read_text().splitlines()
        cells = lines[1].split(",")
        cells[field] = value
        lines[1] = ",".join(cells)
        meta.write_text("\n".join(lines) + "\n")
    return edit


def _drop_row(hf: Path) -> None:
    meta = hf / "train" / "metadata.csv"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join(lines[:1] + lines[2:]) + "\n")


def _moved_folder_artifact(w: Path, sh: dict[str, Path]) -> None:
    from delusive.cli.main import main

    _pets(w, sh)
    assert main(["poison", "--attack", "P5", "--dataset", "folder:pets", "--out", "art/pets"]) == 0
    shutil.move(w / "pets", w / "pets-moved")


POISON = ["poison", "--attack", "P5", "--dataset", "synthetic", "--train-subset", "200", "--out", "art/x"]
IMPORT_HF = ["import", "hf", "--clean-dataset", "synthetic", "--out", "art/back"]

CASES = [
    C("api.01", [*POISON, "--schedule", "fast"], 2, r"--schedule: invalid choice: 'fast'"),
    C("api.02", [*POISON, "--schedule", "cpu", "--reference-schedule"], 2,
      r"--reference-schedule: conflicts with --schedule cpu"),
    C("api.03", [*POISON, "--test-fraction", "0"], 2, r"--test-fraction must be a number strictly between 0 and 1"),
    C("api.04", [*POISON, "--test-fraction", "1.5"], 2, r"--test-fraction must be .* got '1.5'"),
    C("api.05", [*POISON, "--test-fraction", "half"], 2, r"--test-fraction must be .* got 'half'"),
    C("api.06", [*TRAIN, "--split-seed", "x", "--out", "o/r"], 2, r"--split-seed: invalid int value: 'x'"),
    C("api.07", ["train", "--dataset", "folder:pets", *TRAIN[3:], "--out", "o/r"], 2,
      r"folder:pets: no test split .* --test-fraction 0\.2", setup=_pets, absent=("o/r",)),
    C("api.08", [*TRAIN, "--log", "wandb", "--out", "o/r"], 2, r"--log: invalid choice: 'wandb'"),
    C("api.09", ["export", "art/none", "--out", "o/x", "--format", "zip"], 2, r"--format: invalid choice: 'zip'"),
    C("api.10", ["import", "png-missing", "--clean-dataset", "synthetic", "--out", "art/y"], 2,
      r"--norm and --eps: required to import this source"),
    C("api.11", IMPORT_HF, 1, r"metadata\.csv: line 2: .*never relabels", setup=_hf(_edit_row(2, "7"))),
    C("api.12", IMPORT_HF, 1, r"metadata\.csv: line 2: file_name '\.\./x\.png' contains '\.\.'",
      setup=_hf(_edit_row(0, "../x.png"))),
    C("api.13", IMPORT_HF, 1, r"metadata\.csv: 1 training index\(es\) have no row", setup=_hf(_drop_row)),
    C("api.14", IMPORT_HF, 1, r"metadata\.csv: line 2: index 99999 outside the clean set",
      setup=_hf(_edit_row(1, "99999"))),
    C("api.15", [*IMPORT_HF, "--norm", "linf"], 2, r"--norm and --eps: give both", setup=_hf()),
    C("api.16", [*IMPORT_HF, "--norm", "linf", "--eps", "0.01"], 1, r"refusing to write an artifact that breaks",
      setup=_hf()),
    C("api.17", ["verify", "art/pets"], 1, r"clean folder 'pets' is not here \(crafted from .*\); if it moved, pass "
      r"--clean-dataset folder:NEW_PATH", setup=_moved_folder_artifact),
    C("x.api.18", ["verify", "art/pets", "--clean-dataset", "folder:pets-moved"], 0, r"^OK art/pets",
      setup=_moved_folder_artifact, verdict="extra"),
    C("x.api.19", IMPORT_HF, 0, r"identical to the exported artifact's", setup=_hf(), verdict="extra"),
    C("x.api.20", ["eval", "o/ok", "--json", *EVAL], 0, r'"natural_accuracy"',
      setup=lambda w, sh: shutil.copytree(sh["model"], w / "o" / "ok"), verdict="extra"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, ws: Path, shared: dict[str, Path], capsys, monkeypatch):  # noqa: F811
    if case.setup is not None:
        case.setup(ws, shared)
    code, out, err = invoke(case.argv, capsys)
    check_answer(case, code, out, err)
    for rel in case.absent:
        assert not (ws / rel).exists(), f"{case.id}: {rel} exists after the command"
