"""The second round of bad inputs and faults (RELIABILITY-CASES-2.md: every BAD and NOTE row), as a matrix.

Same rules as tests/test_cli_matrix.py, whose helpers this file uses: a failing command answers with exactly
ONE ``delusive: error: ...`` line (``gpu-check: error:`` for the GPU check script), no traceback, the right
status, and leaves nothing that breaks a rerun. Row ids are the document's; ``x.`` ids are extra cases. Cases
that used to hang (FIFOs, ``/dev/zero``, YAML alias bombs, a gzip bomb, a dead Ray address) run in one
subprocess with a timeout per case, so a regression fails instead of hanging. Rows used Fashion-MNIST; here
the synthetic set or small hand-made IDX files and image folders stand in, except where noted. Decisions are
listed in docs/reliability.md.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import delusive.cli.train as cli_train
import test_cli_matrix as matrix1
from data_fixtures import idx_images_bytes, idx_labels_bytes, write_png
from delusive.cli.main import main
from test_cli_matrix import (
    _RUNNER,
    EVAL,
    IMPORT,
    STARTUP_TIMEOUT_S,
    SWEEP_SPEC,
    TRAIN,
    C,
    Case,
    _FastPlan,
    check_answer,
    finished_run,
    invoke,
    leftovers,
    model_copy,
    replace_fails,
    run_case,
    sweep_spec,
)

# the first matrix's fixtures: a fresh working folder, shared inputs, a fast per-epoch evaluation
globals().update(ws=matrix1.ws, shared=matrix1.shared, _fast_epoch_eval=matrix1._fast_epoch_eval, boom=matrix1.boom)

ROOT = Path(__file__).resolve().parents[1]
HANG_TIMEOUT_S = 30  # the bar: each of these ends within 30 s (the bombs within 10 s, checked below)
L2C = ["poison", "--attack", "L2C", "--dataset", "synthetic", "--train-subset", "64", "--eps", "0.2",
       "--attack-param", "trials=1", "--attack-param", "classifier_epochs=1", "--attack-param", "batch_size=32",
       "--attack-param", "classifier=small-cnn", "--attack-param", "generator_arch=l2c-unet-small",
       "--device", "cpu"]
L2C_STEPS = 2  # trials × classifier epochs × ceil(64 / 32)
CHECK = ["data", "check", "fashion-mnist", "--split", "train", "--data-root"]
SWEEP = ["sweep", "spec.yaml", "--out", "sw"]
NO_CUDA = not torch.cuda.is_available()


# --------------------------------------------------------------------------------------------- setups
def _grey(v: int, h: int = 28, w: int = 28) -> np.ndarray:
    return np.full((h, w), v, dtype=np.uint8)


def image_folder(name: str, classes: int = 3, h: int = 28, w: int = 28, rgb: bool = False, splits: bool = False,
                 class_names: tuple[str, ...] | None = None):
    """``f/<name>``: ``classes`` classes of 4 PNGs each (in train/ and test/ when ``splits``)."""
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        names = class_names or tuple(chr(ord("a") + k) for k in range(classes))
        for split in (("train", "test") if splits else ("",)):
            for k, cls in enumerate(names):
                d = ws / "f" / name / split / cls
                d.mkdir(parents=True, exist_ok=True)
                for i in range(4):
                    img = _grey((25 * k + i) % 256, h, w)
                    write_png(d / f"{i:03d}.png", np.stack([img] * 3, -1) if rgb else img)
    return setup


def _with_config(eps: str = "0.1"):
    def edit(d: Path, sh: dict[str, Path]) -> None:
        (d / "config.json").write_text(json.dumps({"eval": {"norm": "linf", "eps": eps}}))
    return edit


def _config_is(kind: str):
    def edit(d: Path, sh: dict[str, Path]) -> None:
        (d / "config.json").unlink(missing_ok=True)
        if kind == "fifo":
            os.mkfifo(d / "config.json")
        elif kind == "zero":
            os.symlink("/dev/zero", d / "config.json")
        elif kind == "passwd":
            os.symlink("/etc/passwd", d / "config.json")
    return edit


def _model_json(**changes):
    def edit(d: Path, sh: dict[str, Path]) -> None:
        meta = json.loads((d / "model.json").read_text())
        meta.update(changes)
        (d / "model.json").write_text(json.dumps(meta))
    return edit


def _generator_as_model(d: Path, sh: dict[str, Path]) -> None:
    from delusive.models import create_model, save_model

    spec = {"arch": "l2c-unet-small", "num_classes": 10, "in_channels": 1, "image_size": 28}
    save_model(create_model("l2c-unet-small", 10, 1, 28, seed=0), d / "model.pt", spec, {"dataset": "synthetic"})


def _after(*setups):
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        for s in setups:
            s(ws, sh)
    return setup


def _replace_with(rel: str, kind: str):
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        p = ws / rel
        p.unlink()
        if kind == "fifo":
            os.mkfifo(p)
        else:
            os.symlink("/dev/zero", p)
    return setup


def idx_root(kind: str):
    """``d/<kind>``: Fashion-MNIST train files under a --data-root, broken in one way."""
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        d = ws / "d" / kind
        d.mkdir(parents=True)
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 256, (20, 28, 28)).astype(np.uint8), rng.integers(0, 10, 20).astype(np.uint8)
        (d / "train-labels-idx1-ubyte").write_bytes(idx_labels_bytes(y))
        images = d / "train-images-idx3-ubyte"
        if kind == "fifo":
            os.mkfifo(images)
        elif kind == "devzero":
            os.symlink("/dev/zero", images)
        elif kind == "sparse":  # a valid header and images, then a hole to 40 GiB (no disk space used)
            images.write_bytes(idx_images_bytes(x))
            os.truncate(images, 40 * 2**30)
        elif kind == "gzbomb":  # header and 20 images, then 2000 gzip members of 1 MiB of zeros each (2 GiB)
            zeros = gzip.compress(b"\0" * 2**20)
            with open(d / "train-images-idx3-ubyte.gz", "wb") as f:
                f.write(gzip.compress(idx_images_bytes(x)))
                for _ in range(2000):
                    f.write(zeros)
    return setup


def _npy_header_bomb(ws: Path, sh: dict[str, Path]) -> None:
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 1, 28, 28)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    (ws / "noise_bomb.npy").write_bytes(buf.getvalue() + b"\0" * 64)  # magic + header, then 64 bytes


def _npy_nan(ws: Path, sh: dict[str, Path]) -> None:
    np.save(ws / "noise_nan.npy", np.full((200, 1, 28, 28), np.nan, dtype=np.float32))


def spec_text(text: str | bytes):
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        (ws / "spec.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    return setup


def _bomb(where: str) -> str:
    """A "billion laughs" spec: 9^9 copies of one string through nested aliases, placed at ``where``."""
    lines = ["a0: &a0 lol"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    body = json.loads(json.dumps(SWEEP_SPEC))
    body.pop(where, None)
    import yaml

    return "\n".join(lines) + f"\n{where}: *a9\n" + yaml.safe_dump(body)


def _big_spec() -> str:
    import yaml

    return yaml.safe_dump(SWEEP_SPEC) + ("# padding\n" * 220_000)  # 2.2 MB, over the 1 MiB limit


def _sweep_with_fifo_timing(ws: Path, sh: dict[str, Path]) -> None:
    """A finished sweep whose P5 cell is then removed (a rerun must rebuild it from the stored artifact),
    with the artifact's timing.json replaced by a FIFO."""
    sweep_spec(ws, sh)
    assert main(SWEEP) == 0
    for result in (ws / "sw" / "cells").glob("*/result.json"):
        if json.loads(result.read_text())["attack"] == "P5":
            result.unlink()
    (timing,) = (ws / "sw" / "artifacts").glob("*/timing.json")
    timing.unlink()
    os.mkfifo(timing)


@pytest.fixture(scope="module")
def l2c_saved(tmp_path_factory) -> Path:
    """An L2C crafting stopped by a full disk at images.npy: its folder keeps the finished generator's
    checkpoint (step = all steps), which the L.3 rows then tamper with."""
    d = tmp_path_factory.mktemp("l2c") / "art"
    with pytest.MonkeyPatch.context() as mp:
        replace_fails("images.npy")(mp)
        assert main([*L2C, "--out", str(d)]) == 1
    assert json.loads((d / "craft_state.json").read_text())["step"] == L2C_STEPS
    return d


def l2c_state(edit):
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        src = sh["l2c"]
        dst = ws / "art" / "l2c"
        shutil.copytree(src, dst)
        state = json.loads((dst / "craft_state.json").read_text())
        edit(dst, state)
        (dst / "craft_state.json").write_text(json.dumps(state))
    return setup


def _truncate_array(d: Path, state: dict) -> None:
    name = next(n for n in state["arrays"] if n.endswith("_f") and n.startswith(f"l2c{state['slot']}"))
    arr = np.load(d / f"craft_{name}.npy")
    np.save(d / f"craft_{name}.npy", arr[: arr.size // 2])


def _checkpoint_at(step: int):
    def check(ws: Path) -> None:
        assert json.loads((ws / "art" / "l2c" / "craft_state.json").read_text())["step"] == step
        assert not leftovers(ws)
    return check


def _no_checkpoint_left(ws: Path) -> None:
    assert not list((ws / "art" / "l2c").glob("craft_*")), "the checkpoint must go once the artifact verifies"


def ro_mkstemp(mp: pytest.MonkeyPatch) -> None:
    """``mkstemp`` under ro2/ fails as on a read-only mount (the error names the temporary file)."""
    import errno
    import tempfile

    real = tempfile.mkstemp

    def fake(*a, **k):  # type: ignore[no-untyped-def]
        if str(k.get("dir", "")).endswith("ro2"):
            raise OSError(errno.EROFS, "Read-only file system", f"{k['dir']}/.p5.png.x1y2z3.tmp")
        return real(*a, **k)
    mp.setattr(tempfile, "mkstemp", fake)


# --------------------------------------------------------------------------------------------- the matrix
SW = ["sweep", "spec.yaml", "--out", "sw"]
BASE = model_copy("base", _with_config())

CASES = [
    # --- eval: the model against the data, and the run's config.json
    C("E.13", ["eval", "o/base", *EVAL, "--dataset", "folder:f/rgb32", "--split", "train"], 1,
      r"o/base: the model takes 1×28×28 images, --dataset folder:f/rgb32 has 3×32×32",
      setup=_after(BASE, image_folder("rgb32", h=32, w=32, rgb=True)), verdict="BAD"),
    C("E.14", ["eval", "o/base", *EVAL, "--dataset", "folder:f/tall", "--split", "train"], 1,  # mnist-fashion's
      r"the model takes 1×28×28 images, --dataset folder:f/tall has 1×56×28",  # 1×56×28, without MNIST's files
      setup=_after(BASE, image_folder("tall", h=56, w=28)), verdict="BAD"),
    C("E.15", ["eval", "o/base", *EVAL, "--dataset", "folder:f/three", "--split", "train"], 1,
      r"o/base: the model has 10 classes, --dataset folder:f/three has 3",
      setup=_after(BASE, image_folder("three")), verdict="NOTE"),
    C("E.20", ["eval", "o/bigcls", *EVAL], 1,
      r"o/bigcls/model\.json: cannot build the described model .*num_classes: must be an integer in \[2, 100000\], "
      r"got 10000000000", setup=model_copy("bigcls", _model_json(num_classes=10**10)), verdict="BAD"),
    C("E.21", ["eval", "o/genascls", *EVAL, "--dataset", "synthetic"], 1,
      r"o/genascls: holds a generator \(l2c-unet-small\), not a classifier",
      setup=model_copy("genascls", _generator_as_model), verdict="BAD"),
    C("E.19", ["eval", "o/cfghuge", *EVAL], 2,
      r"o/cfghuge/config\.json: eval\.eps: 1e308 is not a usable budget", setup=model_copy("cfghuge",
                                                                                          _with_config("1e308")),
      verdict="NOTE"),
    C("X.16", ["eval", "o/cfgout", *EVAL], 1, r"o/cfgout/config\.json: the run config 'config\.json' resolves to "
      r"/etc/passwd, outside o/cfgout", setup=model_copy("cfgout", _config_is("passwd")), verdict="NOTE"),
    C("E.23", [*TRAIN, "--dataset", "folder:f/two", "--eval-attack", "apgd-t", "--out", "o/two"], 1,
      r"--eval-attack apgd-t: needs at least 4 classes .* the dataset has 2", absent=("o/two",),
      setup=image_folder("two", classes=2, splits=True), verdict="NOTE"),
    C("x.eval-fits", ["eval", "o/base", *EVAL], 0, r"robust .*pgd-1", setup=BASE, verdict="extra"),
    # same class count, other class names: refused (scoring labels against the wrong names gives a number that
    # means nothing; docs/reliability.md)
    C("x.eval-class-names", ["eval", "o/named", *EVAL, "--dataset", "folder:f/ten", "--split", "train"], 1,
      r"--dataset folder:f/ten: its classes \(.*\) are not the model's \(t0, t1, t2",
      warns=r"the model's classes \(t0, t1, t2, t3, …\) are not --dataset folder:f/ten's",
      setup=_after(model_copy("named", _model_json(class_names=[f"t{k}" for k in range(10)])),
                   image_folder("ten", classes=10)), verdict="extra"),
    C("x.craft-model-shape", ["poison", "--attack", "P1", "--dataset", "folder:f/rgb32", "--device", "cpu",
                              "--crafting-model", "o/base/model.pt", "--out", "art/p1"], 1,
      r"o/base/model\.pt: the model takes 1×28×28 images, --dataset folder:f/rgb32 has 3×32×32",
      setup=_after(BASE, image_folder("rgb32", h=32, w=32, rgb=True)), absent=("art/p1",), verdict="extra"),

    C("x.cli-seed", [*TRAIN, "--seed", "1180591620717411303424", "--out", "o/seed"], 2,
      r"argument --seed: --seed: expected an integer in \[0, 2\^63 - 1\], got '1180591620717411303424'",
      absent=("o/seed",), verdict="extra"),  # S.19's rule for the CLI
    # --- train: a diverging run
    C("T.09", [*TRAIN, "--lr", "1e10", "--batch-size", "16", "--epochs", "3", "--out", "o/lrhuge"], 1,
      r"^delusive: error: train: loss became nan at epoch 1 \(by batch \d+\); lower --lr$", verdict="BAD"),

    # --- sweep specs: one validation path with the CLI, before any work
    C("S.04", [*SW, "--set", "defenses=[{name: pgd_at, label: AT, norm: linf, eps: [1e308]}]"], 2,
      r"spec\.yaml\.defenses\[0\]\.eps: 1e308 is not a usable budget \(must be finite and below 1e6\)",
      setup=sweep_spec, absent=("sw",), verdict="BAD"),
    C("S.05", [*SW, "--set", "defenses=[{name: pgd_at, label: AT, norm: linf, eps: [2]}]"], 2,
      r"defenses\[0\]\.eps: 2 exceeds 1, the whole \[0, 1\] pixel range of an linf budget", setup=sweep_spec,
      absent=("sw",), verdict="NOTE"),
    C("S.46", [*SW, "--set", "eval.norm=linf", "--set", "eval.eps=1e308", "--set", "attacks=[clean]"], 2,
      r"spec\.yaml\.eval\.eps: 1e308 is not a usable budget", setup=sweep_spec, absent=("sw",), verdict="BAD"),
    C("S.47", [*SW, "--set", "attack_budget={norm: linf, eps: 1e308}", "--set", "attacks=[P5]"], 2,
      r"spec\.yaml\.attack_budget\.eps: 1e308 is not a usable budget", setup=sweep_spec, absent=("sw",),
      verdict="BAD"),
    C("S.48", [*SW, "--set", "attack_budget={norm: linf, eps: 5}", "--set", "attacks=[P5]"], 2,
      r"attack_budget\.eps: 5 exceeds 1", setup=sweep_spec, absent=("sw",), verdict="NOTE"),
    C("S.49", [*SW, "--set", "datasets=[mnist-fashion]", "--set", "eval.attack=apgd-t", "--set", "attacks=[clean]"],
      2, r"spec\.yaml\.eval\.attack apgd-t: needs at least 4 classes .* the dataset mnist-fashion has 2",
      setup=sweep_spec, absent=("sw",), verdict="NOTE"),
    C("S.19", [*SW, "--set", "seeds=[1180591620717411303424]"], 2,
      r"spec\.yaml\.seeds: expected integers in \[0, 2\^63 - 1\], got 1180591620717411303424", setup=sweep_spec,
      absent=("sw",), verdict="NOTE"),
    C("S.31", [*SW, "--set", "seeds=[true]"], 2, r"spec\.yaml\.seeds: expected integers .*got True",
      setup=sweep_spec, absent=("sw",), verdict="NOTE"),
    C("S.25", SW, 2, r"spec\.yaml: not UTF-8 text \(invalid start byte at byte 0\)",
      setup=spec_text(b"\xff\xfe\x00binary\x00"), absent=("sw",), verdict="NOTE"),
    C("S.24", [*SW, "--set", "attacks=[nosuch]"], 1, r"spec\.yaml: \d+ bytes, more than the 1048576 bytes",
      setup=spec_text(_big_spec()), absent=("sw",), verdict="NOTE"),
    C("x.set-alias", [*SW, "--set", "seeds=[&a 0, *a]"], 2, r"--set seeds=\[&a 0, \*a\]: value is not valid YAML "
      r"\(.*anchors \(&a\) are not allowed", setup=sweep_spec, absent=("sw",), verdict="extra"),
    C("x.spec-types", [*SW, "--set", "train.epochs=2.5"], 2, r"spec\.yaml: epochs: must be an integer, got 2\.5",
      setup=sweep_spec, absent=("sw",), verdict="extra"),
    C("x.spec-crafting-epochs", [*SW, "--set", "crafting.epochs=0"], 2,
      r"spec\.yaml\.crafting\.epochs: must be an integer >= 1, got 0", setup=sweep_spec, absent=("sw",),
      verdict="extra"),
    C("x.spec-attack-param", [*SW, "--set", "attacks=[P1]", "--set", "attack_params={P1: {steps: abc}}"], 2,
      r"spec\.yaml\.attack_params\.P1: attack 'P1': steps must be an integer, got 'abc'", setup=sweep_spec,
      absent=("sw",), verdict="extra"),
    C("x.resources-bad", [*SW, "--set", "resources={memory_gb_per_cell: 1e300}"], 2,
      r"resources\.memory_gb_per_cell: expected a number >= 0", setup=sweep_spec, absent=("sw",), verdict="extra"),

    # --- data: an explicit --data-root is used alone; readers bounded by the header
    C("D.19", [*CHECK, "d/fifo"], 1, r"d/fifo/train-images-idx3-ubyte: not a regular file: a FIFO",
      setup=idx_root("fifo"), verdict="NOTE"),
    C("D.20", [*CHECK, "d/partial"], 1, r"--data-root d/partial: train-images-idx3-ubyte \(raw or \.gz\) of dataset "
      r"'fashion-mnist' is missing", setup=idx_root("partial"), verdict="NOTE"),
    C("D.21", [*CHECK, "d/devzero"], 1, r"d/devzero/train-images-idx3-ubyte: not a regular file: a character device",
      setup=idx_root("devzero"), verdict="NOTE"),
    C("D.26", [*CHECK, "/nonexistent/root"], 1, r"--data-root /nonexistent/root: no such directory",
      verdict="NOTE"),
    C("D.22", [*CHECK, "d/sparse"], 1, r"d/sparse/train-images-idx3-ubyte: trailing bytes: 42949672960 bytes, the "
      r"header promises 15696 \(20×28×28 images\)", setup=idx_root("sparse"), verdict="BAD"),
    C("D.15", ["data", "check", "folder:"], 1, r"dataset: folder: needs a path", verdict="NOTE"),
    C("D.25", ["data", "check", "folder:f/newline"], 0, r"'evil\\nimages    999999 × fake'",
      setup=image_folder("newline", class_names=("a", "evil\nimages    999999 × fake")), verdict="NOTE"),

    # --- import of .npy noise
    C("X.06", [*IMPORT[:-1], "art/imp_npybomb", "noise_bomb.npy"], 1,
      r"noise_bomb\.npy: not a plain \.npy array \(header says \(1000000000000, 1, 28, 28\) float32",
      setup=_npy_header_bomb, absent=("art/imp_npybomb",), verdict="BAD"),
    C("X.07", [*IMPORT[:-1], "art/imp_npynan", "noise_nan.npy"], 1,
      r"noise_nan\.npy: the noise holds 156800 non-finite value\(s\) \(NaN or inf\)", setup=_npy_nan,
      absent=("art/imp_npynan",), verdict="NOTE"),

    # --- poison: device, attack parameters, L2C on a full disk and its checkpoint
    C("L.21", [*L2C, "--attack-param", "trials=abc", "--out", "art/l2c_abc"], 1,
      r"attack 'L2C': trials must be an integer, got 'abc'", absent=("art/l2c_abc",), verdict="NOTE"),
    C("L.22", [*L2C, "--attack-param", "classifier_lr=1e30", "--out", "art/l2c_diverge"], 1,
      r"^delusive: error: L2C: a loss became non-finite by step \d+ of 2 .*; lower generator_lr or classifier_lr$",
      verdict="BAD"),
    C("F.01", [*L2C, "--out", "art/l2c"], 1,
      r"^delusive: error: art/l2c/generator\.pt: no space left on device \(free some space, then rerun the same "
      r"command: it resumes from what was saved\)$", fault=replace_fails("generator.pt"),
      check=_checkpoint_at(L2C_STEPS), rerun=rf"resuming crafting from the checkpoint in art/l2c \(step {L2C_STEPS}\)",
      verdict="BAD"),
    C("F.01b", [*L2C, "--out", "art/l2c"], 1, r"^delusive: error: art/l2c/images\.npy: no space left on device",
      fault=replace_fails("images.npy"), check=_checkpoint_at(L2C_STEPS),
      rerun=rf"resuming crafting from the checkpoint in art/l2c \(step {L2C_STEPS}\)", verdict="BAD"),
    C("L.3-short", [*L2C, "--out", "art/l2c"], 1, r"art/l2c/craft_state\.json: L2C checkpoint: holds \d+\+\d+ values, "
      r"the model needs \d+\+\d+; delete it to start crafting afresh", setup=l2c_state(_truncate_array),
      verdict="NOTE"),
    C("L.3-stepneg", [*L2C, "--out", "art/l2c"], 1, r"art/l2c/craft_state\.json: step -5 / slot [01] outside this "
      r"run's schedule \(step 0 to 2", setup=l2c_state(lambda d, s: s.update(step=-5)), verdict="NOTE"),
    C("L.3-stepbig", [*L2C, "--out", "art/l2c"], 1, r"craft_state\.json: step 1000000 / slot [01] outside",
      setup=l2c_state(lambda d, s: s.update(step=1000000)), verdict="NOTE"),
    C("x.export-full", ["export", "art/p5", "--out", "png/x"], 1,
      r"^delusive: error: png/x/labels\.csv: no space left on device \(free some space",
      setup=lambda ws, sh: shutil.copytree(sh["art"], ws / "art" / "p5"), fault=replace_fails("labels.csv"),
      rerun=r"wrote 200 PNGs and labels\.csv to png/x", verdict="extra"),
    C("F.09", ["show", "art/p5", "--out", "ro2/p5.png"], 1, r"^delusive: error: ro2/p5\.png: read-only file system$",
      setup=lambda ws, sh: (shutil.copytree(sh["art"], ws / "art" / "p5"), (ws / "ro2").mkdir()), fault=ro_mkstemp,
      absent=("ro2/p5.png",), verdict="NOTE"),
]
if NO_CUDA:
    CASES.append(C("V.07", ["poison", "--attack", "P5", "--dataset", "synthetic", "--train-subset", "100", "--eps",
                            "0.2", "--device", "cuda", "--out", "art/dev_cuda"], 2,
                   r"device 'cuda': this PyTorch .* sees no CUDA device", absent=("art/dev_cuda",), verdict="NOTE"))


@pytest.fixture(scope="module")
def shared2(shared, l2c_saved) -> dict[str, Path]:
    return {**shared, "l2c": l2c_saved}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, ws: Path, shared2: dict[str, Path], capsys, monkeypatch):
    run_case(case, ws, shared2, capsys, monkeypatch)
    if case.rerun is not None and case.id.startswith("F.01"):
        _no_checkpoint_left(ws)
        assert invoke(("verify", "art/l2c"), capsys)[0] == 0


# --------------------------------------------------------------------------------------------- hangs
HANG_CASES = [
    C("E.18", ["eval", "o/cfgfifo", *EVAL], 1, r"o/cfgfifo/config\.json: not a regular file: a FIFO",
      setup=model_copy("cfgfifo", _config_is("fifo")), verdict="BAD"),
    C("E.28", ["eval", "o/cfgzero", *EVAL], 1, r"o/cfgzero/config\.json: not a regular file: a character device",
      setup=model_copy("cfgzero", _config_is("zero")), verdict="BAD"),
    C("X.11", [*TRAIN, "--out", "o/best"], 1, r"o/best/best\.json: not a regular file: a FIFO",
      setup=_after(finished_run([*TRAIN, "--out", "o/best"]), _replace_with("o/best/best.json", "fifo")),
      verdict="BAD"),
    C("X.11b", [*TRAIN, "--out", "o/best"], 1, r"o/best/best\.json: not a regular file: a character device",
      setup=_after(finished_run([*TRAIN, "--out", "o/best"]), _replace_with("o/best/best.json", "zero")),
      verdict="BAD"),
    C("X.15", SWEEP, 1, r"sw/artifacts/[0-9a-f]+/timing\.json: not a regular file: a FIFO",
      setup=_sweep_with_fifo_timing, verdict="BAD"),
    C("S.20", SWEEP, 2, r"spec\.yaml: not valid YAML \(line 1, column 5: anchors \(&a0\) are not allowed",
      setup=spec_text(_bomb("description")), absent=("sw",), verdict="BAD"),
    C("S.20b", SWEEP, 2, r"anchors \(&a0\) are not allowed in a spec", setup=spec_text(_bomb("datasets")),
      absent=("sw",), verdict="BAD"),
    C("S.20c", SWEEP, 2, r"anchors \(&a0\) are not allowed in a spec", setup=spec_text(_bomb("name")),
      absent=("sw",), verdict="BAD"),
    C("D.23", [*CHECK, "d/gzbomb"], 1, r"d/gzbomb/train-images-idx3-ubyte\.gz: trailing bytes: the stream inflates "
      r"to more than the 15696 bytes", setup=idx_root("gzbomb"), verdict="BAD"),
    C("R.03", [*SWEEP, "--executor", "ray", "--ray-address", "127.0.0.1:1"], 1,
      r"--ray-address 127\.0\.0\.1:1: no Ray cluster answers there \(connection refused\)", setup=sweep_spec,
      verdict="BAD"),
]
if NO_CUDA:
    HANG_CASES.append(C("R.04", [*SWEEP, "--executor", "ray", "--set", "resources={gpus_per_cell: 1}"], 1,
                        r"resources\.gpus_per_cell: each cell asks for 1 GPU\(s\), but this machine .* has 0",
                        setup=sweep_spec, verdict="BAD"))
if (os.cpu_count() or 1) < 64:
    HANG_CASES.append(C("R.05", [*SWEEP, "--executor", "ray", "--set", "resources={cpus_per_cell: 64}"], 1,
                        r"resources\.cpus_per_cell: each cell asks for 64 CPU\(s\), but this machine .* has \d+",
                        setup=sweep_spec, verdict="BAD"))


@pytest.fixture(scope="module")
def hang_results(shared, tmp_path_factory) -> dict[str, tuple[int | None, str, Path, float]]:
    """The cases of HANG_CASES in one subprocess (one torch import), HANG_TIMEOUT_S each: see test_cli_matrix."""
    import time

    env = {**os.environ, "DELUSIVE_PROGRESS": "0", "DELUSIVE_CACHE": str(tmp_path_factory.mktemp("cache"))}
    env.pop("DELUSIVE_DATA", None)
    work, folders = [], {}
    for case in HANG_CASES:
        d = tmp_path_factory.mktemp(f"hang{case.id}")
        cwd = os.getcwd()
        os.chdir(d)
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(cli_train, "EvalPlan", _FastPlan)
                if case.setup is not None:
                    case.setup(d, shared)
        finally:
            os.chdir(cwd)
        folders[case.id] = d
        work.append((case.id, str(d), list(case.argv)))
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER, json.dumps(work)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    results: dict[str, tuple[int | None, str, Path, float]] = {}
    running, started = None, 0.0
    try:
        timeout = STARTUP_TIMEOUT_S
        while len(results) < len(work):
            msg = json.loads(lines.get(timeout=timeout))
            if "start" in msg:
                running, timeout, started = msg["start"], HANG_TIMEOUT_S, time.monotonic()
            elif "id" in msg:
                results[msg["id"]] = (msg["code"], msg["err"], folders[msg["id"]], time.monotonic() - started)
    except queue.Empty:
        pass
    finally:
        proc.kill()
        proc.wait()
        reader.join(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()  # type: ignore[union-attr]
    for cid, _, _ in work:
        if cid not in results:
            why = f"hung: no answer within {HANG_TIMEOUT_S} s" if cid == running else "not run (an earlier case hung)"
            results[cid] = (None, why, folders[cid], float("inf"))
    return results


@pytest.mark.parametrize("case", HANG_CASES, ids=[c.id for c in HANG_CASES])
def test_hang_case(case: Case, hang_results):
    code, err, d, seconds = hang_results[case.id]
    assert code is not None, f"{case.id}: {err}"
    check_answer(case, code, "", err)
    for rel in case.absent:
        assert not (d / rel).exists()
    if case.id.startswith("S.20"):
        assert seconds < 10, f"{case.id}: the bomb took {seconds:.1f} s"


# --------------------------------------------------------------------------------------------- scripts, torchrun
def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check_script", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


GPU_CASES = [("G.02", ["--device", "bogus"], r"device: expected auto, cpu, cuda, cuda:N or mps, got 'bogus'")]
if NO_CUDA:
    GPU_CASES += [("G.01", [], r"device 'cuda': this PyTorch .* sees no CUDA device"),
                  ("G.03", ["--device", "cuda:7"], r"device 'cuda:7': this PyTorch .* sees no CUDA device")]
if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
    GPU_CASES.append(("G.07", ["--device", "cpu", "--small", "--skip-tests", "--device", "mps"],
                      r"device 'mps': MPS is not available here"))


@pytest.mark.parametrize("cid, args, line", GPU_CASES, ids=[c[0] for c in GPU_CASES])
def test_gpu_check_script_refuses_with_one_line(cid, args, line, monkeypatch, capsys):
    mod = _gpu_check_module()
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", *args])
    monkeypatch.delenv("OUT", raising=False)
    assert mod._checked_main() == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("gpu-check: error: "), err
    assert re.search(line, err), err


def test_gpu_check_out_that_is_a_file_is_refused_before_any_check(tmp_path):
    """G.06: through the shell script, with OUT relative to the caller's folder (the script changes directory)."""
    (tmp_path / "gpu_out_file").write_text("keep me\n")
    env = {**os.environ, "OUT": "gpu_out_file", "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--device", "cpu", "--small", "--skip-tests"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    assert r.stderr.strip() == (f"gpu-check: error: OUT={tmp_path}/gpu_out_file: exists and is not a directory (OUT "
                                "names the folder for gpu-check.md)")
    assert (tmp_path / "gpu_out_file").read_text() == "keep me\n"


def _torchrun(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DELUSIVE_PROGRESS": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "delusive", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


DDP = ["train", "--dataset", "synthetic", "--epochs", "1", "--robust-subset", "20", "--eval-steps", "1",
       "--eval-attack", "pgd", "--device", "cpu", "--precision", "fp32"]


@pytest.mark.slow
def test_torchrun_bad_option_is_reported_once(tmp_path):
    """T.02: every rank meets the bad option; rank 0 alone prints the line, every rank exits (torchrun then
    prints its own summary of the failed ranks, which is the launcher's, not delusive's)."""
    r = _torchrun([*DDP, "--train-subset", "400", "--eps", "abc", "--out", "o/ddp_eps"], tmp_path)
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if re.match(r"^delusive( \w+)?: error: ", x)]
    assert lines == ["delusive train: error: argument --eps: --eps: expected a number or a fraction like 8/255, "
                     "got 'abc'"], r.stderr[-3000:]
    assert not re.search(r'File ".*/delusive/', r.stderr), r.stderr[-3000:]  # no rank's traceback (torchrun's own
    # summary of the failed ranks follows: it is the launcher's)
    assert not (tmp_path / "o" / "ddp_eps").exists()


@pytest.mark.slow
def test_torchrun_batch_smaller_than_the_world_trains(tmp_path):
    """T.05: one example on two ranks leaves rank 1 an empty shard of every batch; it must still train (its
    share of the gradient is zero), not report a NaN loss with the wrong advice."""
    r = _torchrun([*DDP, "--train-subset", "1", "--batch-size", "1", "--out", "o/ddp_one"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "natural_accuracy" in r.stdout and "Traceback" not in r.stderr


def test_empty_shard_joins_the_gradient_sum_without_a_loss(monkeypatch):
    """T.05, in one process: a rank whose shard is empty still calls the all-reduce and steps (no NaN)."""
    from delusive import runtime
    from delusive.data import make_synthetic
    from delusive.defenses import TrainConfig, create_objective, fit
    from delusive.models import create_model

    calls = {"reduce": 0}
    monkeypatch.setattr(runtime, "init_distributed", lambda dev=None: True)
    monkeypatch.setattr(runtime, "shard_slice", lambda n: slice(n, n))  # this rank never gets an example
    monkeypatch.setattr(runtime, "all_reduce_gradients",
                        lambda model: calls.__setitem__("reduce", calls["reduce"] + 1))
    monkeypatch.setattr(runtime, "broadcast_module", lambda model, src=0: None)
    import delusive.defenses.loop as loop

    monkeypatch.setattr(loop, "_reduced", lambda loss, correct, n, d: (1.0, 0.0, 1.0))  # the other rank's totals
    model = create_model("small-cnn", 10, 1, 28, seed=0)
    train = make_synthetic(8, 10)
    fit(model, train, create_objective("standard"), TrainConfig(epochs=1, batch_size=4))
    assert calls["reduce"] == 2  # both batches joined the gradient sum


# --------------------------------------------------------------------------------------------- units
def test_ray_resource_check_names_the_resource_and_uses_the_largest_node():
    from delusive.experiments.executors.ray_cluster import check_resources

    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "memory": 8 * 2**30}},
             {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0, "memory": 64 * 2**30}},
             {"Alive": False, "Resources": {"CPU": 128.0, "GPU": 8.0}}]
    check_resources(nodes, {"cpus_per_cell": 16, "gpus_per_cell": 2, "memory_gb_per_cell": 64}, "c")  # fits node 2
    for res, line in [({"gpus_per_cell": 4}, r"resources\.gpus_per_cell: each cell asks for 4 GPU\(s\), but the "
                       r"largest of the 2 live nodes of c has 2"),
                      ({"cpus_per_cell": 17}, r"cpus_per_cell: each cell asks for 17 CPU\(s\).* has 16"),
                      ({"memory_gb_per_cell": 65}, r"memory_gb_per_cell: each cell asks for 65 GB of memory")]:
        with pytest.raises(ValueError, match=line):
            check_resources(nodes, res, "c")


@pytest.mark.parametrize("address, line", [
    ("127.0.0.1:1", r"no Ray cluster answers there \(connection refused\)"),
    ("nohost", r"expected HOST:PORT"),
    ("10.0.0.1:99999", r"port 99999 is not in 1\.\.65535"),
])
def test_ray_address_is_checked_before_ray_is_asked(address, line):
    from delusive.experiments.executors.ray_cluster import check_reachable

    with pytest.raises(ValueError, match=rf"--ray-address {re.escape(address)}: {line}"):
        check_reachable(address, timeout=5)
    check_reachable(None)  # a local cluster, and auto, need no check
    check_reachable("auto")


def test_a_listening_address_passes_the_reachability_check():
    import socket

    from delusive.experiments.executors.ray_cluster import check_reachable

    with socket.socket() as s:  # live control: something listens
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_reachable(f"127.0.0.1:{s.getsockname()[1]}", timeout=5)


@pytest.mark.parametrize("norm, eps", [("linf", "2"), ("linf", "1e308"), ("l2", "1e6"), ("linf", "8/0"),
                                       ("linf", "abc"), ("l2", "-1")])
def test_cli_and_spec_refuse_a_budget_with_the_same_words(norm, eps):
    """Issue 26 point 4: one validation path; the spec's message is the CLI's with the spec's key as option."""
    from delusive.cli.common import UsageError, check_budget
    from delusive.experiments.spec import SpecError, parse_spec

    with pytest.raises(UsageError) as cli:
        check_budget(norm, eps, "OPT")
    spec = {**SWEEP_SPEC, "attack_budget": {"norm": norm, "eps": eps}}
    with pytest.raises(SpecError) as sp:
        parse_spec(spec, "s")
    assert str(sp.value) == str(cli.value).replace("OPT", "s.attack_budget.eps")


def test_spec_loader_refuses_aliases_but_reads_plain_yaml(tmp_path):
    from delusive.utils.safeyaml import load_yaml_file, load_yaml_text

    assert load_yaml_text("a: [1, 2]\nb: {c: x}\n", "s") == {"a": [1, 2], "b": {"c": "x"}}  # live control
    with pytest.raises(ValueError, match=r"^s: not valid YAML \(line 2, column 4: aliases \(\*x\) are not allowed"):
        load_yaml_text("a: 1\nb: *x\n", "s")
    with pytest.raises(ValueError, match=r"could not determine a constructor for the tag .*python/object"):
        load_yaml_text("a: !!python/object:os.system {}\n", "s")
    (tmp_path / "big.yaml").write_text("a: 1\n" + "#" * 2**20)
    with pytest.raises(ValueError, match=r"big\.yaml: \d+ bytes, more than the 1048576 bytes"):
        load_yaml_file(tmp_path / "big.yaml")


def test_model_sizes_are_bounded_before_allocation():
    from delusive.models import create_model

    for kw, line in [({"num_classes": 10**10}, r"num_classes: must be an integer in \[2, 100000\]"),
                     ({"num_classes": True}, r"num_classes: must be an integer"),
                     ({"in_channels": 10**6}, r"in_channels: must be an integer in \[1, 64\]"),
                     ({"image_size": 10**6}, r"image_size: every side must be <= 4096")]:
        with pytest.raises(ValueError, match=line):
            create_model("small-cnn", **{"num_classes": 10, "in_channels": 1, "image_size": 28, **kw})
    assert create_model("small-cnn", np.int64(10), 1, 28) is not None  # numpy integers are integers


def test_a_record_swapped_for_a_huge_file_is_refused_before_it_is_read(tmp_path):
    from delusive.utils import read_json

    p = tmp_path / "metrics.json"
    p.write_text('{"a": 1}')
    assert read_json(p) == {"a": 1}  # live control
    with open(p, "r+b") as f:
        f.truncate(2**40)  # a sparse terabyte
    with pytest.raises(ValueError, match=r"metrics\.json: 1099511627776 bytes, more than the \d+ bytes"):
        read_json(p)


# --------------------------------------------------------------------------------------------- coverage
BAD_ROWS = {"E.18", "E.28", "X.11", "X.11b", "X.15", "S.20", "S.20b", "S.20c", "R.03", "R.04", "R.05", "S.41ref",
            "F.01", "F.01b", "S.04", "S.46", "S.47", "L.22", "T.09", "T.05", "E.13", "E.14", "E.20", "E.21", "D.22",
            "D.23", "X.06", "G.01", "G.02", "G.03", "G.06", "G.07"}
NOTE_ROWS = {"D.19", "D.20", "D.21", "D.26", "E.23", "S.49", "S.05", "S.48", "V.07", "E.15", "T.02", "T.08", "L.21",
             "L.3-short", "S.19", "S.25", "X.07", "L.3-stepneg", "L.3-stepbig", "D.15", "D.25", "S.24", "S.31", "F.09",
             "X.16", "E.19"}
ELSEWHERE = {  # rows answered by a test of another form in this file, or decided in docs/reliability.md
    "G.01": "test_gpu_check_script_refuses_with_one_line", "G.02": "test_gpu_check_script_refuses_with_one_line",
    "G.03": "test_gpu_check_script_refuses_with_one_line", "G.07": "test_gpu_check_script_refuses_with_one_line",
    "G.06": "test_gpu_check_out_that_is_a_file_is_refused_before_any_check",
    "T.02": "test_torchrun_bad_option_is_reported_once",
    "T.05": "test_torchrun_batch_smaller_than_the_world_trains, test_empty_shard_joins_the_gradient_sum_...",
    "T.08": "torchrun's own AssertionError for --nproc-per-node 0, before delusive runs: docs/reliability.md",
    "S.41ref": "studies combining axes (issue 26 point 2): the reports helper's branch",
    # rows that need hardware this machine lacks are skipped where it has it (a GPU, MPS, 64 CPUs)
    "V.07": "CASES when CUDA is absent", "R.04": "HANG_CASES when CUDA is absent",
    "R.05": "HANG_CASES below 64 CPUs",
}


def test_every_bad_and_note_row_is_in_the_matrix():
    cases = {c.id: c for c in CASES + HANG_CASES}
    assert len(BAD_ROWS) == 32 and len(NOTE_ROWS) == 26  # the document's counts
    assert (BAD_ROWS | NOTE_ROWS) - set(cases) <= set(ELSEWHERE)
    assert {i for i in BAD_ROWS if i in cases and cases[i].verdict != "BAD"} == set()
    assert {i for i in NOTE_ROWS if i in cases and cases[i].verdict != "NOTE"} == set()
    assert len(cases) == len(CASES) + len(HANG_CASES)  # no id used twice
    decided = (ROOT / "docs" / "reliability.md").read_text()
    assert [i for i in sorted(BAD_ROWS | NOTE_ROWS) if f"| {i} |" not in decided] == []  # a decision per row


@pytest.mark.parametrize("argv, code", [
    (["train", "--dataset", "synthetic", "--eps", "abc", "--out", "o"], 2),  # argparse's error, usage included
    (["data", "check", "folder:"], 1),  # a user error raised by the command
])
def test_only_rank_zero_reports_a_user_error(argv, code, monkeypatch, capsys, tmp_path):
    """T.02 in one process: a rank other than 0 of a torchrun job exits with the same status, silently."""
    monkeypatch.chdir(tmp_path)
    for rank, expect_line in (("1", False), ("0", True)):  # rank 0 is the live control
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        try:
            got = main(argv)
        except SystemExit as e:
            got = e.code
        err = capsys.readouterr().err
        assert got == code
        assert (re.search(r"^delusive( \w+)?: error: ", err, re.M) is not None) == expect_line, (rank, err)
        if not expect_line:
            assert err == ""


@pytest.mark.parametrize("exc, line", [
    (FloatingPointError("train: loss became nan at epoch 2 (by batch 20); lower --lr"),
     "delusive: error: train: loss became nan at epoch 2 (by batch 20); lower --lr"),
    (MemoryError(), "delusive: error: out of memory (MemoryError); the input, or a size asked for"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] . DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 5120000000000 bytes"), "delusive: error: out of memory ([enforce fail"),
])
def test_diverging_runs_and_memory_errors_are_one_line(exc, line, boom, capsys):
    boom(matrix1.raising(exc))
    assert main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(line), err
