"""Every bad input and fault of the tester's list (RELIABILITY-CASES.md, 125 cases), as a matrix run on the CLI.

Each case is (row id, argv, setup, expected exit code, a regex the answer must match, paths that must not
exist afterwards). A failing command must answer with exactly ONE ``delusive: error: ...`` line (argparse's
``delusive <cmd>: error:`` after its usage for bad options; ``FAILED`` + a problem list for ``verify``), no
traceback, and leave nothing behind that breaks a rerun. Cases run in-process on the ``synthetic`` dataset in
a fresh working folder; the ones that used to hang (FIFO, ``/dev/zero``) run as subprocesses with a timeout,
so a regression fails instead of hanging. Faults the tester made with tmpfs mounts (read-only, full disk) are
simulated by making ``mkdir`` / ``os.replace`` / ``torch.save`` fail the way the OS and torch fail; the rerun
after the fault must then complete. Row ids are the document's; ``x.`` ids are extra cases of this file.
Decisions (rows whose answer is a choice) are listed in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import delusive.cli.train as cli_train
from data_fixtures import idx_images_bytes, idx_labels_bytes, write_cifar, write_png
from delusive.attacks import export_png
from delusive.attacks.artifact import payload_hash
from delusive.cli.main import main
from delusive.experiments.pipeline import EvalPlan
from delusive.utils import sha256_bytes

# later options win in argparse, so a case overrides one of these by appending it again
TRAIN = ["train", "--dataset", "synthetic", "--epochs", "1", "--train-subset", "200", "--robust-subset", "10",
         "--eval-steps", "1", "--eval-attack", "pgd", "--device", "cpu"]
IMPORT = ["import", "--clean-dataset", "synthetic", "--train-subset", "200", "--norm", "linf", "--eps", "0.2",
          "--out", "art/imp"]
EVAL = ["--attack", "pgd", "--eval-steps", "1", "--robust-subset", "10", "--device", "cpu"]
ERROR_LINE = re.compile(r"^delusive( [\w-]+)?: error: ")
HANG_TIMEOUT_S = 20


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    message: str  # regex: in the error line (code != 0), in stderr after FAILED (verify), else in stdout+stderr
    setup: Callable[[Path, dict[str, Path]], None] | None = None
    absent: tuple[str, ...] = ()
    verdict: str = "GOOD"  # the row's verdict in RELIABILITY-CASES.md ("extra": not a row of it)
    warns: str | None = None  # regex of a UserWarning the command must give
    fault: Callable[[pytest.MonkeyPatch], None] | None = None  # simulated OS / torch failure
    rerun: str | None = None  # after the fault is lifted the same command must exit 0 printing this regex
    check: Callable[[Path], None] | None = None  # extra assertions on the working folder afterwards


def C(id, argv, code, message, **kw) -> Case:  # noqa: N802, A002 - a short constructor keeps the table readable
    return Case(id, tuple(str(a) for a in argv), code, message, **kw)


# --------------------------------------------------------------------------------------------- running
def invoke(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def the_error_line(err: str) -> str:
    """The one error line of a failed command: the last line of stderr, and the only one saying error."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    assert len(errors) == 1 and errors[0] == lines[-1], f"expected exactly one final error line, got:\n{err}"
    return errors[0]


def check_answer(case: Case, code: int, out: str, err: str) -> None:
    assert code == case.code, f"{case.id}: exit {code}, expected {case.code}\nstdout:\n{out}\nstderr:\n{err}"
    if case.code == 0:
        assert "Traceback" not in err and not any(ERROR_LINE.match(x) for x in err.splitlines()), err
        assert re.search(case.message, out + err), f"{case.id}: {case.message!r} not in\n{out}\n{err}"
    elif case.message.startswith("FAILED"):
        assert "Traceback" not in err and err.startswith("FAILED"), err
        assert re.search(case.message, err, re.S), f"{case.id}: {case.message!r} not in\n{err}"
    else:
        line = the_error_line(err)
        assert re.search(case.message, line), f"{case.id}: {case.message!r} does not match\n{line}"


def leftovers(folder: Path) -> list[str]:
    """Half-written files (atomic writes' temporaries) anywhere under ``folder``."""
    return [str(p) for p in folder.rglob("*.tmp")]


# --------------------------------------------------------------------------------------------- shared inputs
class _Payload:
    """A pickle whose loading would run a shell command (the tester's malicious files)."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (self.cmd,))


@dataclass(frozen=True)
class _FastPlan(EvalPlan):
    """Per-epoch robust accuracy on 20 images with PGD-1, so a tiny train takes seconds, not tens."""

    epoch_subset: int = 20
    epoch_steps: int = 1


@pytest.fixture(autouse=True)
def _fast_epoch_eval(monkeypatch):
    monkeypatch.setattr(cli_train, "EvalPlan", _FastPlan)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict[str, Path]:
    """A P5 artifact of 200 synthetic images (ε = 0.2), its PNG export and a saved (untrained) model."""
    from delusive.models import create_model, save_model

    base = tmp_path_factory.mktemp("shared")
    art = base / "p5"
    assert main(["poison", "--attack", "P5", "--dataset", "synthetic", "--train-subset", "200", "--eps", "0.2",
                 "--device", "cpu", "--out", str(art)]) == 0
    export_png(art, base / "png")
    spec = {"arch": "small-cnn", "num_classes": 10, "in_channels": 1, "image_size": 28}
    save_model(create_model("small-cnn", 10, 1, 28, seed=0), base / "model" / "model.pt", spec,
               {"dataset": "synthetic"})
    save_model(create_model("small-cnn", 10, 1, 28, seed=1), base / "other" / "model.pt", spec,
               {"dataset": "synthetic"})
    return {"art": art, "png": base / "png", "model": base / "model", "other": base / "other"}


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DELUSIVE_DATA", raising=False)
    monkeypatch.setenv("DELUSIVE_CACHE", str(tmp_path / "cache"))  # never the user's cache
    return tmp_path


# --------------------------------------------------------------------------------------------- setups
def a_file(rel: str, text: str = "keep me\n"):
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text)
    return setup


def a_dir(rel: str):
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        (ws / rel).mkdir(parents=True, exist_ok=True)
    return setup


def _copy_art(ws: Path, sh: dict[str, Path], name: str) -> Path:
    dst = ws / "art" / name
    shutil.copytree(sh["art"], dst, symlinks=True)
    return dst


def _manifest(art: Path) -> dict:
    return json.loads((art / "manifest.json").read_text())


def _write_manifest(art: Path, m: dict, rehash: bool) -> None:
    """Write an edited manifest; ``rehash`` = the tester's RE-HASHED cases (a forger who recomputes every
    hash: the payload hash is unkeyed, so only the content checks can catch them)."""
    if rehash:
        m["payload_sha256"] = payload_hash(m["files"], m)
    (art / "manifest.json").write_text(json.dumps(m))


def art_edit(name: str, edit: Callable[[Path, dict], None], rehash: bool = False):
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        art = _copy_art(ws, sh, name)
        m = _manifest(art)
        edit(art, m)
        _write_manifest(art, m, rehash)
    return setup


def art_files(name: str, edit: Callable[[Path], None]):
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        edit(_copy_art(ws, sh, name))
    return setup


def set_eps(eps: object) -> Callable[[Path, dict], None]:
    def edit(art: Path, m: dict) -> None:
        m["threat"]["eps_text"] = eps
        if isinstance(eps, float):
            m["threat"]["eps"] = eps
    return edit


def extra_entry(name: str, target: str | None = None) -> Callable[[Path, dict], None]:
    def edit(art: Path, m: dict) -> None:
        src = Path(target or name) if os.path.isabs(target or name) else art / (target or name)
        m["files"][name] = sha256_bytes(src.read_bytes()) if src.is_file() else "0" * 64
    return edit


def _outside_copy(art: Path, m: dict) -> None:
    outside = art.parent.parent / "outside2"
    outside.mkdir()
    shutil.copy(art / "images.npy", outside / "images.npy")
    extra_entry("../../outside2/images.npy")(art, m)


def _edit_images(art: Path, fn: Callable[[np.ndarray], None], rehash: bool) -> None:
    images = np.load(art / "images.npy")
    fn(images)
    np.save(art / "images.npy", images)
    if rehash:
        m = _manifest(art)
        m["files"]["images.npy"] = sha256_bytes((art / "images.npy").read_bytes())
        _write_manifest(art, m, True)


def _pixel_out(images: np.ndarray) -> None:
    images[5, 0, 0, 0] = 0 if images[5, 0, 0, 0] > 127 else 255  # |δ| >= 0.5 > ε = 0.2 at one pixel


def _pixel_lsb(images: np.ndarray) -> None:
    images[7, 0, 3, 3] ^= 1


def _flip_label(art: Path) -> None:
    labels = np.load(art / "labels.npy")
    labels[0] = (labels[0] + 1) % 10
    np.save(art / "labels.npy", labels)


def _link(name: str, target: str | Callable[[Path], str]) -> Callable[[Path], None]:
    def edit(art: Path) -> None:
        dest = target(art) if callable(target) else target
        (art / name).unlink()
        os.symlink(dest, art / name)
    return edit


def _link_outside(art: Path) -> str:
    outside = art.parent / "outside"
    outside.mkdir()
    shutil.copy(art / "images.npy", outside / "images.npy")
    return str(outside / "images.npy")


def _fifo(name: str) -> Callable[[Path], None]:
    def edit(art: Path) -> None:
        (art / name).unlink()
        os.mkfifo(art / name)
    return edit


def _object_npy(art: Path) -> None:
    np.save(art / "images.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _rename_files_key(art: Path, m: dict) -> None:
    m["files"]["../../outside/images.npy"] = m["files"].pop("images.npy")


def png_edit(edit: Callable[[Path, list[str]], list[str]]):
    """A copy of the exported PNG folder at png/x whose labels.csv rows are edited by ``edit``."""
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        dst = ws / "png" / "x"
        shutil.copytree(sh["png"], dst)
        rows = (dst / "labels.csv").read_text().splitlines()
        new = edit(dst, rows)
        if new is None:
            (dst / "labels.csv").unlink()
        else:
            (dst / "labels.csv").write_text("\n".join(new) + "\n")
    return setup


def _row_to(target_of: Callable[[Path], str], index: int):
    def edit(d: Path, rows: list[str]) -> list[str]:
        rows[1 + index] = f"{target_of(d)},{rows[1 + index].split(',')[1]}"
        return rows
    return edit


def _abs_elsewhere(d: Path) -> str:
    other = d.parent / "elsewhere"
    other.mkdir()
    shutil.copy(d / "000007.png", other / "000007.png")
    return str(other / "000007.png")


def _dotdot(d: Path) -> str:
    (d.parent / "outside").mkdir()
    shutil.copy(d / "000009.png", d.parent / "outside" / "000009.png")
    return "../outside/000009.png"


def _zero_link(d: Path) -> str:
    os.symlink("/dev/zero", d / "zero.png")
    return "zero.png"


def _wrong_label(d: Path, rows: list[str]) -> list[str]:
    name, label = rows[1].split(",")
    rows[1] = f"{name},{(int(label) + 1) % 10}"
    return rows


def _dup_row(index: int, over: int):
    """Row ``over`` replaced by a copy of row ``index`` (that index twice, ``over`` missing)."""
    def edit(d: Path, rows: list[str]) -> list[str]:
        rows[1 + over] = rows[1 + index]
        return rows
    return edit


def _replace_row(index: int, text: str):
    def edit(d: Path, rows: list[str]) -> list[str]:
        rows[1 + index] = text
        return rows
    return edit


def finished_run(argv: list[str]):
    """A finished run in the working folder (what a rerun finds)."""
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        assert main([str(a) for a in argv]) == 0
    return setup


# --- dataset files
def _idx_pair(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def idx(kind: str):
    """``d/<kind>``: Fashion-MNIST train files (20 images) broken in one way."""
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        import gzip

        d = ws / "d" / kind
        d.mkdir(parents=True)
        x, y = _idx_pair()
        img, lbl = idx_images_bytes(x), idx_labels_bytes(y)
        gz = False
        if kind == "trunc_gz":
            img, gz = gzip.compress(img)[: len(gzip.compress(img)) // 2], True
        elif kind == "notgz":
            img, gz = b"this is not gzip at all", True
        elif kind == "badmagic":
            img = idx_images_bytes(x, magic=0x00000804)
        elif kind == "labrange":
            y[3] = 200
            lbl = idx_labels_bytes(y)
        elif kind == "countmm":
            lbl = idx_labels_bytes(y[:-1])
        elif kind == "trunc_raw":
            img = img[:-100]
        elif kind == "hugecount":
            img = struct.pack(">IIII", 0x803, 2**32 - 1, 28, 28) + img[16:]
        elif kind == "empty":
            img = b""
        elif kind == "trailing":
            img = img + b"\0" * 40
        (d / ("train-images-idx3-ubyte" + (".gz" if gz else ""))).write_bytes(img)
        (d / "train-labels-idx1-ubyte").write_bytes(lbl)
    return setup


def cifar(kind: str):
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        root = ws / "c" / kind
        write_cifar(root)
        batch = root / "cifar-10-batches-py" / "data_batch_1"
        if kind == "evil_top":
            batch.write_bytes(pickle.dumps(_Payload(f"touch {ws / 'marker'}"), protocol=2))
        elif kind == "evil_nested":
            batch.write_bytes(pickle.dumps({b"data": _Payload(f"touch {ws / 'marker'}"), b"labels": [1]},
                                           protocol=2))
        elif kind == "trunc":
            batch.write_bytes(batch.read_bytes()[:100])
        elif kind == "badlabel":
            from data_fixtures import cifar_batch, py2_pickle

            b = cifar_batch(4, 0)
            b[b"labels"][3] = 55
            batch.write_bytes(py2_pickle(b))
    return setup


def _grey(v: int, size: int = 28) -> np.ndarray:
    return np.full((size, size), v, dtype=np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` (a decompression bomb, without the bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def folder(kind: str):
    """``f/<kind>``: a folder dataset (classes a, b, c of 28×28 grey PNGs) broken in one way."""
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        root = ws / "f" / kind
        splits = ("train", "test") if kind.startswith("tt_") else ("",)
        classes = ("a",) if kind == "tt_onecls" else ("a", "b", "c")
        for split in splits:
            for k, cls in enumerate(classes):
                (root / split / cls).mkdir(parents=True, exist_ok=True)
                if kind == "tt_emptycls" and split == "train" and cls == "c":
                    continue
                for i in range(5):
                    write_png(root / split / cls / f"{i:03d}.png", _grey(40 * k + i))
        a = root / "a"
        if kind == "txtfile":
            (a / "README.txt").write_text("notes\n")
        elif kind == "fakepng":
            (a / "fake.png").write_text("not an image\n")
        elif kind == "truncpng":
            data = (root / "b" / "004.png").read_bytes()
            (root / "b" / "004.png").write_bytes(data[: len(data) // 2])
        elif kind == "emptycls":
            (root / "d").mkdir()
        elif kind == "mixsize":
            write_png(a / "big.png", _grey(9, 32))
        elif kind == "devzero":
            os.symlink("/dev/zero", a / "zero.png")
        elif kind == "bomb":
            (a / "bomb.png").write_bytes(_png_header_only(30000, 30000))
        elif kind == "empty":
            shutil.rmtree(root)
            root.mkdir(parents=True)
        elif kind == "rgbmix":
            write_png(a / "rgb.png", np.zeros((28, 28, 3), dtype=np.uint8))
    return setup


# --- models
def model_copy(name: str, edit: Callable[[Path, dict[str, Path]], None]):
    def setup(ws: Path, sh: dict[str, Path]) -> None:
        dst = ws / "o" / name
        shutil.copytree(sh["model"], dst)
        edit(dst, sh)
    return setup


def _raw_pickle(d: Path, sh: dict[str, Path]) -> None:
    (d / "model.pt").write_bytes(pickle.dumps(_Payload(f"touch {d.parent.parent / 'marker'}"), protocol=2))


def _torch_pickle(d: Path, sh: dict[str, Path]) -> None:
    torch.save({"conv.weight": _Payload(f"touch {d.parent.parent / 'marker'}")}, d / "model.pt")


def _swap(d: Path, sh: dict[str, Path]) -> None:
    shutil.copy(sh["other"] / "model.pt", d / "model.pt")


def _random_bytes(d: Path, sh: dict[str, Path]) -> None:
    (d / "model.pt").write_bytes(np.random.default_rng(0).bytes(100))


def evil_checkpoint(ws: Path, sh: dict[str, Path]) -> None:
    (ws / "o" / "evilckpt").mkdir(parents=True)
    torch.save({"epoch": 0, "model": _Payload(f"touch {ws / 'marker'}")}, ws / "o" / "evilckpt" / "checkpoint.pt")


# --- sweeps
SWEEP_SPEC = {
    "name": "tiny", "datasets": ["synthetic"], "train_subset": 200, "attacks": ["clean", "P5"],
    "attack_budget": {"norm": "linf", "eps": "0.2"}, "defenses": [{"name": "standard", "label": "ST"}],
    "models": ["small-cnn"], "train": {"epochs": 1, "batch_size": 64},
    "eval": {"attack": "pgd", "steps": 1, "robust_subset": 10, "val_size": 0, "epoch_steps": 1, "epoch_subset": 10},
    "seeds": [0], "device": "cpu",
}


def sweep_spec(ws: Path, sh: dict[str, Path]) -> None:
    import yaml

    (ws / "spec.yaml").write_text(yaml.safe_dump(SWEEP_SPEC))


# --------------------------------------------------------------------------------------------- faults
def mkdir_fails(code: int, under: str):
    """``mkdir`` below ``under`` fails with ``code`` (a read-only mount: EROFS; an immutable dir: EPERM)."""
    def install(mp: pytest.MonkeyPatch) -> None:
        real = Path.mkdir

        def fake(self, *a, **k):  # type: ignore[no-untyped-def]
            if str(self).startswith(under + os.sep):
                raise OSError(code, os.strerror(code), str(self))
            return real(self, *a, **k)
        mp.setattr(Path, "mkdir", fake)
    return install


def replace_fails(name: str, code: int = errno.ENOSPC):
    """The atomic rename of ``name`` fails with ``code`` and no file name, as ``write``/``fsync`` on a full
    disk do: the temporary file has been written and must be cleaned up."""
    def install(mp: pytest.MonkeyPatch) -> None:
        real = os.replace

        def fake(src, dst, *a, **k):  # type: ignore[no-untyped-def]
            if Path(dst).name == name:
                raise OSError(code, os.strerror(code))
            return real(src, dst, *a, **k)
        mp.setattr(os, "replace", fake)
    return install


class _FullDisk:
    """A file that takes ``room`` more bytes, then fails every write with ENOSPC (a disk filling up)."""

    def __init__(self, f, room: int) -> None:  # type: ignore[no-untyped-def]
        self.f, self.room = f, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.f.write(bytes(data)[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def torch_save_fails(name: str, nth: int):
    """The ``nth`` ``torch.save`` into a file called ``name`` runs out of disk space after 1000 bytes: torch's
    zip writer then raises its own RuntimeError ("unexpected pos"), with the OSError as its context."""
    def install(mp: pytest.MonkeyPatch) -> None:
        real = torch.save
        seen = {"n": 0}

        def fake(obj, f, *a, **k):  # type: ignore[no-untyped-def]
            target = sys._getframe(1).f_locals.get("path")  # save_checkpoint(path, ...) is the caller
            if target is not None and Path(target).name == name:
                seen["n"] += 1
                if seen["n"] == nth:
                    return real(obj, _FullDisk(f, 1000), *a, **k)
            return real(obj, f, *a, **k)
        mp.setattr(torch, "save", fake)
    return install


def _no_leftovers_and(*checks: Callable[[Path], None]) -> Callable[[Path], None]:
    def check(ws: Path) -> None:
        assert not leftovers(ws), leftovers(ws)
        for c in checks:
            c(ws)
    return check


def _checkpoint_loadable(ws: Path) -> None:
    from delusive.models import load_checkpoint

    assert load_checkpoint(ws / "o" / "run" / "checkpoint.pt")["epoch"] == 0  # epoch 1's, intact


def _not_an_artifact_yet(ws: Path) -> None:
    assert (ws / "art" / "p").is_dir() and not (ws / "art" / "p" / "manifest.json").exists()


def _one_cell_finished(ws: Path) -> None:
    assert len(list((ws / "sw").glob("cells/*/result.json"))) == 1


def _file_intact(rel: str) -> Callable[[Path], None]:
    def check(ws: Path) -> None:
        assert (ws / rel).read_text() == "keep me\n"
    return check


def _evaluated_at(eps: str) -> Callable[[Path], None]:
    def check(ws: Path) -> None:
        assert json.loads((ws / "o" / "x" / "config.json").read_text())["eval"]["eps"] == eps
    return check


def _train_size(n: int) -> Callable[[Path], None]:
    def check(ws: Path) -> None:
        cfg = json.loads(next(ws.glob("o/*/config.json")).read_text())
        assert cfg["train_size"] == n
    return check


# --------------------------------------------------------------------------------------------- the matrix
OUT = ("--out", "o/x")
V = "verify"
TP = ["train", "--dataset", "synthetic", "--epochs", "1", "--robust-subset", "10", "--eval-steps", "1",
      "--eval-attack", "pgd", "--device", "cpu", "--poison"]  # train --poison (the artifact fixes the subset)

CASES = [
    # --- 1.x options of train (BAD / NOTE rows first)
    C("1.04", [*TRAIN, "--eps", "1e308", *OUT], 2, r"--eps: 1e308 is not a usable budget", absent=("o",),
      verdict="BAD"),
    C("1.09", [*TRAIN, "--eps", "1e39", *OUT], 2, r"--eps: 1e39 is not a usable budget", absent=("o",),
      verdict="BAD"),
    C("1.25", [*TRAIN, "--eval-eps", "1e308", *OUT], 2, r"--eval-eps: 1e308 is not a usable budget",
      absent=("o",), verdict="BAD"),
    C("1.28", [*TRAIN, "--defense", "pgd_at", "--steps", "0", *OUT], 2,
      r"defense 'pgd_at': steps must be an integer >= 1, got 0", absent=("o",), verdict="BAD"),
    C("1.18", [*TRAIN, "--out", "o/afile"], 2, r"--out o/afile: exists and is not a directory",
      setup=a_file("o/afile"), check=_file_intact("o/afile"), verdict="BAD"),
    C("1.21", [*TRAIN, "--out", "ro/run"], 1, r"^delusive: error: ro/run: read-only file system$",
      setup=a_dir("ro"), fault=mkdir_fails(errno.EROFS, "ro"), absent=("ro/run",), verdict="BAD"),
    C("1.23", [*TRAIN, "--out", "rodir/run"], 1, r"^delusive: error: rodir/run: permission denied",
      setup=a_dir("rodir"), fault=mkdir_fails(errno.EPERM, "rodir"), absent=("rodir/run",), verdict="BAD"),
    C("x.out-under-file", [*TRAIN, "--out", "o/afile/sub"], 1, r"^delusive: error: o/afile/sub: not a directory",
      setup=a_file("o/afile"), check=_file_intact("o/afile"), verdict="extra"),
    C("x.poison-out-file", ["poison", "--attack", "P5", "--dataset", "synthetic", "--train-subset", "100",
                            "--out", "o/afile"], 1, r"^delusive: error: o/afile: exists and is not a directory$",
      setup=a_file("o/afile"), check=_file_intact("o/afile"), verdict="extra"),
    C("x.sweep-out-file", ["sweep", "spec.yaml", "--out", "o/afile"], 1, r"o/afile: exists and is not a directory$",
      setup=lambda ws, sh: (sweep_spec(ws, sh), a_file("o/afile")(ws, sh)), check=_file_intact("o/afile"),
      verdict="extra"),
    C("x.no-spec", ["sweep", "nospec.yaml", "--out", "sw"], 2, r"nospec\.yaml: no such spec file", absent=("sw",),
      verdict="extra"),
    C("1.02", [*TRAIN, "--eps", "0", *OUT], 0, r"natural_accuracy", warns=r"--eps 0: an empty threat model",
      verdict="NOTE"),
    C("1.08", [*TRAIN, "--eps", "2", *OUT], 2, r"--eps: 2 exceeds 1, the whole \[0, 1\] pixel range",
      absent=("o",), verdict="NOTE"),
    C("1.20", [*TRAIN, "--batch-size", "100000", *OUT], 0, r"natural_accuracy", verdict="NOTE"),
    C("1.15", [*TRAIN, "--dataset", "folder:f/tt_ok", "--train-subset", "3000", *OUT], 0, r"\(15 images\)",
      warns=r"--train-subset 3000 is larger than the training split \(15 images\)", check=_train_size(15),
      setup=folder("tt_ok"),
      verdict="NOTE"),
    C("1.24", [*TRAIN, "--eps", "0.05", *OUT], 0, r"resuming from o/x/checkpoint\.pt",
      setup=finished_run([*TRAIN, "--eps", "0.1", *OUT]), check=_evaluated_at("0.05"), verdict="NOTE"),
    C("1.27", [*TRAIN, "--eval-steps", "0", *OUT], 2, r"--eval-steps must be an integer >= 1, got '0'",
      absent=("o",), verdict="NOTE"),
    # --- 1.x GOOD rows
    C("1.01", [*TRAIN, "--eps", "-0.1", *OUT], 2, r"--eps: expected a number or a fraction like 8/255, got '-0.1'",
      absent=("o",)),
    C("1.03", [*TRAIN, "--eps", "nan", *OUT], 2, r"--eps: expected a number .* got 'nan'", absent=("o",)),
    C("1.05", [*TRAIN, "--eps", "8/0", *OUT], 2, r"--eps: division by zero in '8/0'", absent=("o",)),
    C("1.06", [*TRAIN, "--eps", "abc", *OUT], 2, r"--eps: expected a number .* got 'abc'", absent=("o",)),
    C("1.07", [*TRAIN, "--eps", "inf", *OUT], 2, r"--eps: expected a number .* got 'inf'", absent=("o",)),
    C("1.10", [*TRAIN, "--dataset", "nosuchset", *OUT], 1, r"dataset: unknown name 'nosuchset'; expected one of",
      absent=("o",)),
    C("1.11", [*TRAIN, "--model", "nosuch", *OUT], 2, r"argument --model: invalid choice: 'nosuch'", absent=("o",)),
    C("1.12", [*TRAIN, "--defense", "nosuch", *OUT], 2, r"argument --defense: invalid choice: 'nosuch'",
      absent=("o",)),
    C("1.13", [*TRAIN, "--epochs", "0", *OUT], 2, r"--epochs must be an integer >= 1, got '0'", absent=("o",)),
    C("1.14", [*TRAIN, "--batch-size", "0", *OUT], 2, r"--batch-size must be an integer >= 1, got '0'",
      absent=("o",)),
    C("1.16", [*TRAIN, "--train-subset", "0", *OUT], 2, r"--train-subset must be an integer >= 1, got '0'",
      absent=("o",)),
    C("1.17", [*TRAIN, "--train-subset", "-5", *OUT], 2, r"--train-subset must be an integer >= 1, got '-5'",
      absent=("o",)),
    C("1.19", [*TRAIN, "--lr", "nan", *OUT], 2, r"--lr: expected a number .* got 'nan'", absent=("o",)),
    C("1.26", [*TRAIN, "--robust-subset", "0", *OUT], 2, r"--robust-subset must be an integer >= 1, got '0'",
      absent=("o",)),
    C("1.29", [*TRAIN, "--defense", "trades", "--defense-param", "beta=abc", *OUT], 2,
      r"defense 'trades': beta must be a number, got 'abc'", absent=("o",)),
    C("1.22", [*TRAIN, "--out", "/proc/nope/run"], 1, r"^delusive: error: /proc/nope: no such file or directory$"),
    C("x.device", [*TRAIN, "--device", "tpu", *OUT], 2, r"--device: expected auto, cpu, cuda, cuda:N or mps",
      absent=("o",), verdict="extra"),

    # --- 2.x dataset files (IDX, CIFAR-10 pickles, image folders)
    C("2.20", ["data", "check", "folder:f/bomb"], 1, r"f/bomb/a/bomb\.png: .*decompression bomb",
      setup=folder("bomb"), verdict="BAD"),
    C("2.17", ["data", "check", "folder:f/emptycls"], 1, r"f/emptycls/d\b.*(no image|empty)",
      setup=folder("emptycls"), verdict="NOTE"),
    C("2.24", [*TRAIN, "--dataset", "folder:f/tt_emptycls", "--out", "o/emptycls"], 1,
      r"f/tt_emptycls/train/c\b.*(no image|empty)", setup=folder("tt_emptycls"), absent=("o/emptycls",),
      verdict="NOTE"),
    C("2.19", ["data", "check", "folder:f/devzero"], 1, r"f/devzero/a/zero\.png: .*not a regular file",
      setup=folder("devzero"), verdict="NOTE"),
    C("2.01", ["data", "check", "fashion-mnist", "--data-root", "d/trunc_gz"], 1,
      r"d/trunc_gz/train-images-idx3-ubyte\.gz: cannot read \(EOFError", setup=idx("trunc_gz")),
    C("2.10", ["data", "check", "fashion-mnist", "--data-root", "d/notgz"], 1,
      r"d/notgz/train-images-idx3-ubyte\.gz: cannot read \(BadGzipFile", setup=idx("notgz")),
    C("2.02", ["data", "check", "fashion-mnist", "--data-root", "d/badmagic"], 1,
      r"d/badmagic/train-images-idx3-ubyte: bad magic number 0x00000804", setup=idx("badmagic")),
    C("2.03", ["data", "check", "fashion-mnist", "--data-root", "d/labrange"], 1,
      r"d/labrange/train-labels-idx1-ubyte: label 200 at index 3 is out of range \[0, 10\)", setup=idx("labrange")),
    C("2.04", ["data", "check", "fashion-mnist", "--data-root", "d/countmm"], 1,
      r"d/countmm/train-labels-idx1-ubyte: 19 labels for 20 images", setup=idx("countmm")),
    C("2.05", ["data", "check", "fashion-mnist", "--data-root", "d/trunc_raw"], 1,
      r"d/trunc_raw/train-images-idx3-ubyte: truncated", setup=idx("trunc_raw")),
    C("2.07", ["data", "check", "fashion-mnist", "--data-root", "d/hugecount"], 1,
      r"d/hugecount/train-images-idx3-ubyte: truncated: .* promises", setup=idx("hugecount")),
    C("2.09", ["data", "check", "fashion-mnist", "--data-root", "d/empty"], 1,
      r"d/empty/train-images-idx3-ubyte: truncated IDX header: 0 bytes", setup=idx("empty")),
    C("2.11", ["data", "check", "fashion-mnist", "--data-root", "d/trailing"], 1,
      r"d/trailing/train-images-idx3-ubyte: trailing bytes", setup=idx("trailing")),
    C("2.12", [*TRAIN, "--dataset", "fashion-mnist", "--data-root", "d/labrange", "--out", "o/badtrain"], 1,
      r"label 200 at index 3 is out of range", setup=idx("labrange"), absent=("o/badtrain",)),
    C("2.14", ["data", "check", "folder:f/txtfile"], 0, r"images +15 ", setup=folder("txtfile")),
    C("2.15", ["data", "check", "folder:f/fakepng"], 1, r"f/fakepng/a/fake\.png: not a readable image",
      setup=folder("fakepng")),
    C("2.16", ["data", "check", "folder:f/truncpng"], 1, r"f/truncpng/b/004\.png: not a readable image",
      setup=folder("truncpng")),
    C("2.18", ["data", "check", "folder:f/mixsize"], 1, r"f/mixsize/a/big\.png: size 32×32 .* differs",
      setup=folder("mixsize")),
    C("2.22", ["data", "check", "folder:f/empty"], 1, r"f/empty: no class sub-folders found", setup=folder("empty")),
    C("2.23", ["data", "check", "folder:f/rgbmix"], 0, r"× 3×28×28", setup=folder("rgbmix")),
    C("2.25", [*TRAIN, "--dataset", "folder:f/tt_onecls", "--out", "o/onecls"], 1,
      r"num_classes: must be >= 2, got 1", setup=folder("tt_onecls"), absent=("o/onecls",)),
    C("2.27", ["data", "check", "cifar10", "--data-root", "c/evil_top"], 1,
      r"c/evil_top/cifar-10-batches-py/data_batch_1: not a plain CIFAR-10 batch pickle .*refusing to load global "
      r"posix\.system", setup=cifar("evil_top"), absent=("marker",)),
    C("2.28", ["data", "check", "cifar10", "--data-root", "c/evil_nested"], 1,
      r"data_batch_1: not a plain CIFAR-10 batch pickle .*posix\.system", setup=cifar("evil_nested"),
      absent=("marker",)),
    C("2.34", ["data", "check", "cifar10", "--data-root", "c/trunc"], 1,
      r"c/trunc/cifar-10-batches-py/data_batch_1: not a plain CIFAR-10 batch pickle", setup=cifar("trunc")),
    C("2.36", ["data", "check", "cifar10", "--data-root", "c/badlabel"], 1,
      r"data_batch_1: label 55 at index 3 is out of range \[0, 10\)", setup=cifar("badlabel")),

    # --- 3.x poison artifacts: verify (BAD / NOTE first)
    C("3.44", [V, "art/r_abs_key"], 1, r"art/r_abs_key/manifest\.json: 'files' entry '/etc/passwd' is an absolute",
      setup=art_edit("r_abs_key", extra_entry("/etc/passwd"), rehash=True), verdict="BAD"),
    C("3.45", [V, "art/r_dotdot_images"], 1, r"manifest\.json: 'files' entry '\.\./\.\./outside2/images\.npy' "
      r"contains '\.\.'", setup=art_edit("r_dotdot_images", _outside_copy, rehash=True), verdict="BAD"),
    C("3.65", [*TP, "art/r_abs_key", "--out", "o/tp"], 1, r"'files' entry '/etc/passwd' is an absolute",
      setup=art_edit("r_abs_key", extra_entry("/etc/passwd"), rehash=True), absent=("o/tp",), verdict="BAD"),
    C("3.27", [V, "art/t_bad_json"], 1, r"art/t_bad_json/manifest\.json: invalid JSON",
      setup=art_files("t_bad_json", lambda a: (a / "manifest.json").write_text('{"format": "delusive-poison/1", ')),
      verdict="NOTE"),
    C("3.19", [V, "art/t_link_devzero"], 1, r"art/t_link_devzero/images\.npy: not a regular file: a character device",
      setup=art_files("t_link_devzero", _link("images.npy", "/dev/zero")), verdict="NOTE"),
    C("3.20", [V, "art/t_link_outside"], 1, r"images\.npy.* outside art/t_link_outside",
      setup=art_files("t_link_outside", _link("images.npy", _link_outside)), verdict="NOTE"),
    C("3.41", [V, "art/r_eps_higher"], 0, r"OK art/r_eps_higher: .* ≤ 0\.5 \(linf; max 0\.19",
      setup=art_edit("r_eps_higher", set_eps("0.5"), rehash=True), verdict="NOTE"),
    C("3.41b", [V, "art/r_eps_higher", "--norm", "linf", "--eps", "0.1"], 1, r"FAILED.*exceed linf eps=0\.1",
      setup=art_edit("r_eps_higher", set_eps("0.5"), rehash=True), verdict="extra"),
    C("3.50", [V, "art/r_eps_huge"], 1, r"art/r_eps_huge/manifest\.json: .*1e308",
      setup=art_edit("r_eps_huge", set_eps("1e308"), rehash=True), verdict="NOTE"),
    C("3.47", [V, "art/r_eps_nan"], 1, r"art/r_eps_nan/manifest\.json: invalid JSON .*NaN",
      setup=art_edit("r_eps_nan", set_eps(float("nan")), rehash=False), verdict="NOTE"),
    C("3.48", [V, "art/r_eps_neg"], 1, r"art/r_eps_neg/manifest\.json: threat: eps: .*got '-1'",
      setup=art_edit("r_eps_neg", set_eps("-1"), rehash=True), verdict="NOTE"),
    C("3.49", [V, "art/r_attack_str"], 0, r"OK art/r_attack_str",
      setup=art_edit("r_attack_str", lambda a, m: m.update(attack="../../evil"), rehash=True), verdict="NOTE"),
    C("3.63", [*TP, "art/t_link_devzero", "--out", "o/tp"], 1, r"images\.npy: not a regular file: a character",
      setup=art_files("t_link_devzero", _link("images.npy", "/dev/zero")), absent=("o/tp",), verdict="NOTE"),
    C("3.66", [*TP, "art/r_eps_higher", "--out", "o/tp"], 0, r"poison P5\) with standard",
      setup=art_edit("r_eps_higher", set_eps("0.5"), rehash=True), verdict="NOTE"),
    C("3.67", [*TP, "art/r_attack_str", "--out", "o/tp"], 0, r"poison \.\./\.\./evil\) with standard",
      setup=art_edit("r_attack_str", lambda a, m: m.update(attack="../../evil"), rehash=True), verdict="NOTE"),
    # --- 3.x GOOD rows
    C("3.00", [V, "art/p5"], 0, r"OK art/p5: labels unchanged", setup=art_files("p5", lambda a: None)),
    C("3.10", [V, "art/t_eps_lower"], 1, r"FAILED.*payload hash mismatch in manifest\.json",
      setup=art_edit("t_eps_lower", set_eps("0.1"))),
    C("3.13", [V, "art/t_pixel_in"], 1, r"FAILED.*payload hash mismatch in images\.npy",
      setup=art_files("t_pixel_in", lambda a: _edit_images(a, _pixel_lsb, False))),
    C("3.25", [V, "art/t_label_flip"], 1, r"FAILED.*payload hash mismatch in labels\.npy",
      setup=art_files("t_label_flip", _flip_label)),
    C("3.15", [V, "art/t_del_labels"], 1, r"art/t_del_labels/labels\.npy: payload file missing",
      setup=art_files("t_del_labels", lambda a: (a / "labels.npy").unlink())),
    C("3.18", [V, "art/t_del_manifest"], 1, r"art/t_del_manifest: not a poison artifact \(no manifest\.json\)",
      setup=art_files("t_del_manifest", lambda a: (a / "manifest.json").unlink())),
    C("3.26", [V, "art/t_pickle_npy"], 1, r"art/t_pickle_npy/images\.npy: not a plain \.npy array",
      setup=art_files("t_pickle_npy", _object_npy)),
    C("3.22", [V, "art/t_dotdot_key"], 1, r"manifest\.json: 'files' entry '\.\./\.\./outside/images\.npy' contains",
      setup=art_edit("t_dotdot_key", _rename_files_key)),
    C("3.24", [V, "art/t_abs_key"], 1, r"manifest\.json: 'files' entry '/etc/passwd' is an absolute path",
      setup=art_edit("t_abs_key", extra_entry("/etc/passwd"))),
    C("3.40", [V, "art/r_eps_lower"], 1, r"FAILED.*perturbation\(s\) exceed linf eps=0\.1",
      setup=art_edit("r_eps_lower", set_eps("0.1"), rehash=True)),
    C("3.43", [V, "art/r_pixel_out"], 1, r"FAILED.*1 perturbation\(s\) exceed linf eps=0\.2 .*indices \[5\]",
      setup=art_files("r_pixel_out", lambda a: _edit_images(a, _pixel_out, True))),
    C("3.51", [V, "art/r_norm_bogus"], 1, r"manifest\.json: threat: norm: expected one of linf, l2, got 'l7'",
      setup=art_edit("r_norm_bogus", lambda a, m: m["threat"].update(norm="l7"), rehash=True)),
    C("3.60", [*TP, "art/t_pixel_in", "--out", "o/tp"], 2,
      r"--poison art/t_pixel_in: verification failed: payload hash mismatch in images\.npy",
      setup=art_files("t_pixel_in", lambda a: _edit_images(a, _pixel_lsb, False)), absent=("o/tp",)),
    C("3.64", [*TP, "art/r_pixel_out", "--out", "o/tp"], 2,
      r"verification failed: 1 perturbation\(s\) exceed linf eps=0\.2", absent=("o/tp",),
      setup=art_files("r_pixel_out", lambda a: _edit_images(a, _pixel_out, True))),
    C("3.62", [*TP, "art/t_del_deltas", "--out", "o/tp"], 1, r"art/t_del_deltas/class_deltas\.npy: payload file "
      r"missing", setup=art_files("t_del_deltas", lambda a: (a / "class_deltas.npy").unlink()), absent=("o/tp",)),

    # --- 3.7x import of a PNG folder (labels.csv)
    C("3.75", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"png/x/labels\.csv: line 9: filename '/.*' is an absolute",
      setup=png_edit(_row_to(_abs_elsewhere, 7)), absent=("art/imp",), verdict="BAD"),
    C("3.76", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"png/x/labels\.csv: line 11: filename '\.\./outside/000009"
      r"\.png' contains '\.\.'", setup=png_edit(_row_to(_dotdot, 9)), absent=("art/imp",), verdict="BAD"),
    C("3.73", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"png/x/labels\.csv: line 202: duplicate index 4",
      setup=png_edit(lambda d, rows: [*rows, rows[5]]), absent=("art/imp",), verdict="NOTE"),
    C("3.70", [*IMPORT[:1], "png/x", *IMPORT[1:]], 0, r"wrote art/imp: imported png-folder, 200 images",
      setup=png_edit(lambda d, rows: rows)),
    C("3.72", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"labels\.csv: line 7: duplicate index 4",
      setup=png_edit(_dup_row(4, 5)), absent=("art/imp",)),
    C("3.74", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"png/x: 1 training index\(es\) have no row in labels\.csv, "
      r"e\.g\. \[100\]", setup=png_edit(lambda d, rows: rows[:101] + rows[102:]), absent=("art/imp",)),
    C("3.77", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"labels\.csv: line 2: filename '/etc/passwd' is an absolute",
      setup=png_edit(_replace_row(0, "/etc/passwd,7")), absent=("art/imp",)),
    C("3.78", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"labels\.csv: line 2: label of 000000\.png is \d, the clean "
      r"label is \d", setup=png_edit(_wrong_label), absent=("art/imp",)),
    C("3.79", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"labels\.csv: line 2: .*label must be an integer",
      setup=png_edit(_replace_row(0, "000000.png,abc")), absent=("art/imp",)),
    C("3.80", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"png/x/labels\.csv: missing",
      setup=png_edit(lambda d, rows: None), absent=("art/imp",)),
    C("3.81", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"labels\.csv: line 2: .*must be named by its training index",
      setup=png_edit(_row_to(_zero_link, 0)), absent=("art/imp",)),
    C("3.82", [*IMPORT[:1], "png/x", *IMPORT[1:]], 1, r"png/x: 200 training index\(es\) have no row",
      setup=png_edit(lambda d, rows: rows[:1]), absent=("art/imp",)),

    # --- 4.x faults: full disk, read-only; the rerun must complete
    C("4.20", [*TRAIN, "--epochs", "2", "--out", "o/run"], 1,
      r"^delusive: error: o/run/checkpoint\.pt: no space left on device \(free some space, then rerun the same "
      r"command", setup=None, fault=torch_save_fails("checkpoint.pt", 2),
      check=_no_leftovers_and(_checkpoint_loadable), rerun=r"resuming from o/run/checkpoint\.pt",
      verdict="BAD"),
    C("4.20b", [*TRAIN, "--out", "o/run"], 1,
      r"^delusive: error: o/run/metrics\.json: no space left on device \(free some space, then rerun",
      fault=replace_fails("metrics.json"), check=_no_leftovers_and(), rerun=r"natural_accuracy", verdict="extra"),
    C("4.23", ["poison", "--attack", "P5", "--dataset", "synthetic", "--train-subset", "200", "--eps", "0.2",
               "--device", "cpu", "--out", "art/p"], 1,
      r"^delusive: error: art/p/labels\.npy: no space left on device \(free some space, then rerun",
      fault=replace_fails("labels.npy"), check=_no_leftovers_and(_not_an_artifact_yet), rerun=r"wrote art/p: 200",
      verdict="BAD"),
    C("4.27", ["sweep", "spec.yaml", "--out", "sw"], 1,
      r"^delusive: error: sw/cells/[0-9a-f]+/checkpoint\.pt: no space left on device \(free some space",
      setup=sweep_spec, fault=torch_save_fails("checkpoint.pt", 2), check=_no_leftovers_and(_one_cell_finished),
      rerun=r"sweep tiny: 2 cells, 1 already finished, 1 to run", verdict="BAD"),

    # --- 5.x untrusted model files
    C("5.04", [*TRAIN, "--out", "o/evilckpt"], 1,
      r"o/evilckpt/checkpoint\.pt: not a valid delusive training checkpoint", setup=evil_checkpoint,
      absent=("marker",), verdict="BAD"),
    C("5.05", ["eval", "o/swap", *EVAL], 1, r"o/swap/model\.pt: the weights do not match the weights_sha256",
      setup=model_copy("swap", _swap), verdict="NOTE"),
    C("5.01", ["eval", "o/evilmodel", *EVAL], 1, r"o/evilmodel/model\.pt: not a valid delusive model checkpoint",
      setup=model_copy("evilmodel", _raw_pickle), absent=("marker",)),
    C("5.02", ["eval", "o/evilmodel2/model.pt", *EVAL], 1,
      r"o/evilmodel2/model\.pt: not a valid delusive model checkpoint \(",
      setup=model_copy("evilmodel2", _torch_pickle), absent=("marker",)),
    C("5.03", ["poison", "--attack", "P1", "--dataset", "synthetic", "--train-subset", "200", "--device", "cpu",
               "--crafting-model", "o/evilmodel2/model.pt", "--out", "art/evilcraft"], 1,
      r"o/evilmodel2/model\.pt: not a valid delusive model checkpoint", setup=model_copy("evilmodel2", _torch_pickle),
      absent=("marker", "art/evilcraft")),
    C("5.06", ["eval", "o/rand", *EVAL], 1, r"o/rand/model\.pt: not a valid delusive model checkpoint",
      setup=model_copy("rand", _random_bytes)),
    C("x.eval-ok", ["eval", "o/ok", *EVAL], 0, r"robust .*pgd-1", setup=model_copy("ok", lambda d, s: None),
      verdict="extra"),
]


def run_case(case: Case, ws: Path, shared: dict[str, Path], capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> None:
    """Run one matrix row in ``ws``: its setup, the command (under its simulated fault, expecting its warning),
    the one-line answer, what must not be left on disk, its extra check, and the rerun after the fault.
    Every matrix file of the suite runs its rows through this."""
    if case.setup is not None:
        case.setup(ws, shared)
    with monkeypatch.context() as mp:
        if case.fault is not None:
            case.fault(mp)
        if case.warns is not None:
            with pytest.warns(UserWarning, match=case.warns):
                code, out, err = invoke(case.argv, capsys)
        else:
            code, out, err = invoke(case.argv, capsys)
    check_answer(case, code, out, err)
    for rel in case.absent:
        assert not (ws / rel).exists(), f"{case.id}: {rel} exists after the command"
    if case.check is not None:
        case.check(ws)
    if case.rerun is not None:
        code, out, err = invoke(case.argv, capsys)
        assert code == 0, f"{case.id}: the rerun after the fault failed:\n{err}"
        assert re.search(case.rerun, out + err), f"{case.id}: {case.rerun!r} not in\n{out}\n{err}"
        assert not leftovers(ws)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, ws: Path, shared: dict[str, Path], capsys, monkeypatch):
    run_case(case, ws, shared, capsys, monkeypatch)


def test_the_poison_rerun_after_a_full_disk_verifies(ws, shared, capsys, monkeypatch):
    """4.25/4.26: the artifact a rerun completes after a full disk verifies."""
    argv = ("poison", "--attack", "P5", "--dataset", "synthetic", "--train-subset", "200", "--eps", "0.2",
            "--device", "cpu", "--out", "art/p")
    with monkeypatch.context() as mp:
        replace_fails("manifest.json")(mp)
        code, _, err = invoke(argv, capsys)
    assert code == 1 and re.search(r"art/p/manifest\.json: no space left on device", the_error_line(err))
    code, _, err = invoke(("verify", "art/p"), capsys)
    assert code == 1 and "not a poison artifact (no manifest.json)" in the_error_line(err)
    assert invoke(argv, capsys)[0] == 0
    code, out, _ = invoke(("verify", "art/p"), capsys)
    assert code == 0 and out.startswith("OK art/p")


# --------------------------------------------------------------------------------------------- hangs
HANG_CASES = [
    C("3.21", [V, "art/t_link_fifo"], 1, r"art/t_link_fifo/images\.npy: not a regular file: a FIFO",
      setup=art_files("t_link_fifo", _fifo("images.npy")), verdict="BAD"),
    C("3.46", [V, "art/r_devzero_key"], 1, r"manifest\.json: 'files' entry '/dev/zero' is an absolute path",
      setup=art_edit("r_devzero_key", extra_entry("/dev/zero")), verdict="BAD"),
    C("3.68", [*TP, "art/t_link_fifo", "--out", "o/tp_fifo"], 1, r"images\.npy: not a regular file: a FIFO",
      setup=art_files("t_link_fifo", _fifo("images.npy")), absent=("o/tp_fifo",), verdict="BAD"),
    C("3.69", [*TP, "art/r_devzero_key", "--out", "o/tp_zero"], 1, r"'files' entry '/dev/zero' is an absolute",
      setup=art_edit("r_devzero_key", extra_entry("/dev/zero")), absent=("o/tp_zero",), verdict="BAD"),
    C("x.manifest-fifo", [V, "art/t_manifest_fifo"], 1, r"t_manifest_fifo/manifest\.json: not a regular file: a FIFO",
      setup=art_files("t_manifest_fifo", _fifo("manifest.json")), verdict="extra"),
    # last: a hang here leaves the cases above answered
    C("x.spec-fifo", ["sweep", "spec.yaml", "--out", "sw"], 1, r"spec\.yaml: not a regular file: a FIFO",
      setup=lambda ws, sh: os.mkfifo(ws / "spec.yaml"), absent=("sw",), verdict="extra"),
]


# One interpreter runs the cases in turn (one torch import instead of five, on a busy 2-core machine) and
# reports each as a JSON line; the parent allows each case HANG_TIMEOUT_S seconds and kills the runner when one
# hangs, failing that case and reporting the ones after it as not run.
_RUNNER = r"""
import contextlib, io, json, os, sys
from delusive.cli.main import main
print(json.dumps({"ready": True}), flush=True)
for cid, cwd, argv in json.loads(sys.argv[1]):
    os.chdir(cwd)
    err = io.StringIO()
    print(json.dumps({"start": cid}), flush=True)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:
            import traceback
            code, _ = 99, traceback.print_exc(file=err)
    print(json.dumps({"id": cid, "code": code, "err": err.getvalue()}), flush=True)
"""
STARTUP_TIMEOUT_S = 120  # importing torch on a loaded machine


@pytest.fixture(scope="module")
def hang_results(shared, tmp_path_factory) -> dict[str, tuple[int | None, str, Path]]:
    import queue
    import threading

    env = {**os.environ, "DELUSIVE_PROGRESS": "0", "DELUSIVE_CACHE": str(tmp_path_factory.mktemp("cache"))}
    env.pop("DELUSIVE_DATA", None)
    work = []
    folders = {}
    for case in HANG_CASES:
        ws = tmp_path_factory.mktemp(f"hang{case.id}")
        if case.setup is not None:
            case.setup(ws, shared)
        folders[case.id] = ws
        work.append((case.id, str(ws), list(case.argv)))
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER, json.dumps(work)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    results: dict[str, tuple[int | None, str, Path]] = {}
    running = None
    try:
        timeout = STARTUP_TIMEOUT_S
        while len(results) < len(work):
            msg = json.loads(lines.get(timeout=timeout))
            if "start" in msg:
                running, timeout = msg["start"], HANG_TIMEOUT_S
            elif "id" in msg:
                results[msg["id"]] = (msg["code"], msg["err"], folders[msg["id"]])
    except queue.Empty:
        pass
    finally:
        proc.kill()
        proc.wait()
    for cid, _, _ in work:
        if cid not in results:
            why = f"hung: no answer within {HANG_TIMEOUT_S} s" if cid == running else "not run (an earlier case hung)"
            results[cid] = (None, why, folders[cid])
    return results


@pytest.mark.parametrize("case", HANG_CASES, ids=[c.id for c in HANG_CASES])
def test_hang_case(case: Case, hang_results):
    code, err, ws = hang_results[case.id]
    assert code is not None, f"{case.id}: {err}"
    check_answer(case, code, "", err)
    for rel in case.absent:
        assert not (ws / rel).exists()


# --------------------------------------------------------------------------------------------- coverage
BAD_ROWS = {"1.04", "1.09", "1.25", "1.28", "1.18", "1.21", "1.23", "2.20", "3.21", "3.44", "3.45", "3.46", "3.65",
            "3.68", "3.69", "3.75", "3.76", "4.20", "4.23", "4.27", "5.04"}
NOTE_ROWS = {"1.02", "1.08", "1.20", "1.15", "1.27", "1.24", "2.17", "2.24", "2.19", "3.27", "3.19", "3.20", "3.41",
             "3.50", "3.47", "3.48", "3.49", "3.63", "3.66", "3.67", "3.73", "4.12", "5.05"}
NOT_IN_MATRIX = {"4.12": "two concurrent sweeps (tens of seconds); decision in docs/reliability.md"}


def test_every_bad_and_note_row_is_in_the_matrix():
    cases = {c.id: c for c in CASES + HANG_CASES}
    assert len(BAD_ROWS) == 21 and len(NOTE_ROWS) == 23  # the document's counts
    assert (BAD_ROWS | NOTE_ROWS) - set(cases) == set(NOT_IN_MATRIX)
    assert {i for i in BAD_ROWS if i in cases and cases[i].verdict != "BAD"} == set()
    assert {i for i in NOTE_ROWS if i in cases and cases[i].verdict != "NOTE"} == set()
    assert len(cases) == len(CASES) + len(HANG_CASES)  # no id used twice


# --------------------------------------------------------------------------------------------- main's rules
def raising(exc: BaseException) -> Callable[[object], int]:
    def command(args: object) -> int:
        raise exc
    return command


@pytest.fixture
def boom(monkeypatch):
    """Install a ``delusive boom`` command that runs the given function (a stand-in for a sub-command)."""
    import types

    import delusive.cli.main as cli_main

    def install(func: Callable[[object], int]) -> None:
        mod = types.ModuleType("delusive.cli._boom")
        mod.register = lambda sub: sub.add_parser("boom").set_defaults(func=func)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "delusive.cli._boom", mod)
        monkeypatch.setattr(cli_main, "_COMMANDS", (*cli_main._COMMANDS, "_boom"))
    return install


@pytest.mark.parametrize("exc", [TypeError("bad operand"), KeyError("epoch"), AssertionError("invariant"),
                                 RuntimeError("CUDA error: device-side assert triggered"), ZeroDivisionError(),
                                 EOFError("internal reader bug")])
def test_internal_bugs_keep_their_traceback(exc, boom, capsys):
    boom(raising(exc))
    with pytest.raises(type(exc)):
        main(["boom"])
    assert "delusive: error" not in capsys.readouterr().err


@pytest.mark.parametrize("exc, line", [
    (OSError(errno.EACCES, "Permission denied", "/data/x.npy"), "delusive: error: /data/x.npy: permission denied"),
    (PermissionError(errno.EPERM, "Operation not permitted", "rodir/run"), "rodir/run: permission denied"),
    (OSError(errno.EROFS, "Read-only file system", "ro/run"), "delusive: error: ro/run: read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device (free some space, then rerun"),
    (OSError(errno.EIO, "Input/output error", "disk.img"), "delusive: error: disk.img: input/output error"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "a/b"), "error: a/b: no such file or directory"),
    (FileNotFoundError("m/model.pt: no such model file"), "delusive: error: m/model.pt: no such model file"),
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 5 vs 3"), "write failed, most likely "
     "no space left on device (free some space"),
    (RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"), "write failed"),
    (pickle.UnpicklingError("invalid load key, 'x'.\nmore"), "not a loadable file (UnpicklingError: invalid load "
     "key, 'x'. more)"),
    (ValueError("x.json: line one\nline two"), "delusive: error: x.json: line one line two"),
])
def test_user_errors_are_one_line_with_status_1(exc, line, boom, capsys):
    boom(raising(exc))
    assert main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and line in the_error_line(err), err


def test_delusive_traceback_keeps_the_traceback_of_user_errors_too(boom, capsys, monkeypatch):
    boom(raising(ValueError("x.json: bad")))
    assert main(["boom"]) == 1  # control: one line by default
    monkeypatch.setenv("DELUSIVE_TRACEBACK", "1")
    with pytest.raises(ValueError, match="x.json: bad"):
        main(["boom"])


def test_a_write_error_names_the_file_being_written(tmp_path, boom, capsys, monkeypatch):
    """``write``/``fsync``/``rename`` failures often carry no file name: the line names the file delusive was
    writing, and the temporary file is gone."""
    from delusive.utils import atomic_write_json

    boom(lambda args: atomic_write_json(tmp_path / "run" / "metrics.json", {"a": 1}))
    replace_fails("metrics.json")(monkeypatch)
    assert main(["boom"]) == 1
    line = the_error_line(capsys.readouterr().err)
    assert line.startswith(f"delusive: error: {tmp_path / 'run' / 'metrics.json'}: no space left on device"), line
    assert not leftovers(tmp_path) and not (tmp_path / "run" / "metrics.json").exists()


def test_a_usage_error_is_one_line_with_status_2(boom, capsys):
    from delusive.cli.common import UsageError

    boom(raising(UsageError("--eps: too big\n(really)")))
    with pytest.raises(SystemExit) as e:
        main(["boom"])
    assert e.value.code == 2 and capsys.readouterr().err == "delusive: error: --eps: too big (really)\n"


def test_a_missing_subcommand_module_is_an_error_not_silence(monkeypatch):
    import delusive.cli.main as cli_main

    shipped = cli_main._COMMANDS
    monkeypatch.setattr(cli_main, "_COMMANDS", (*shipped, "no_such_group"))
    with pytest.raises(ImportError, match=r"delusive\.cli\.no_such_group cannot be imported"):
        main(["--version"])
    monkeypatch.setattr(cli_main, "_COMMANDS", shipped)  # control: the shipped list builds every command
    sub = next(a for a in cli_main.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"train", "eval", "poison", "verify", "import", "sweep", "data"} <= set(sub.choices)
