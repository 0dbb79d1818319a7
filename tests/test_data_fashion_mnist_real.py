"""The real Fashion-MNIST must be present: these tests fail (never skip) when it is missing.

They read it the way users do, ``load_dataset("fashion-mnist")`` with no root (so ``$DELUSIVE_DATA`` or the
Debian path ``/usr/share/datasets/fashion-mnist``), and check the files against the download table's
checksums, which ties that table to the real data.
"""

import gzip
import hashlib

import numpy as np
import pytest

from delusive.data import DataNotFoundError, load_dataset, search_roots
from delusive.data import catalog as cat

HOW = ("Fashion-MNIST is missing: run `make setup` (it installs the Debian package dataset-fashion-mnist, "
       "`apt-get install dataset-fashion-mnist`) or set DELUSIVE_DATA to a folder holding the four IDX .gz files "
       "from https://github.com/zalandoresearch/fashion-mnist")
PINNED_SHA256 = {  # ArrayDataset.sha256() of the official data; `delusive data check fashion-mnist --split S`
    "train": "cd3620ea2235bba2fb5f31d24bde41659575eea49ce6b2746ecf4ec1a86d4ea6",
    "test": "9fa88d9f3f915f04dacd38e24eb0b68a372b05074077ed6105b4fcaac275c43f",
}


def _load(split):
    try:
        return load_dataset("fashion-mnist", split)
    except DataNotFoundError as e:
        raise AssertionError(f"{HOW}\n{e}") from e


@pytest.mark.realdata
def test_real_fashion_mnist_loads():
    train, test = _load("train"), _load("test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.shape == test.shape == (1, 28, 28) and train.num_classes == 10 and train.x.dtype == np.uint8
    assert (train.label_histogram() == 6000).all() and (test.label_histogram() == 1000).all()
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert abs(float(train.float_x().mean()) - 0.2860) < 1e-3  # the published mean pixel value
    assert train.sha256() == PINNED_SHA256["train"] and test.sha256() == PINNED_SHA256["test"]


@pytest.mark.realdata
def test_real_files_match_the_download_checksums():
    files = list(cat.IDX_FILES["train"] + cat.IDX_FILES["test"])
    paths = cat._locate("fashion-mnist", search_roots("fashion-mnist", None), files)
    assert paths is not None, HOW
    for path in paths:
        data = path.read_bytes()
        payload = gzip.decompress(data) if path.suffix == ".gz" else data
        source = cat.DOWNLOADS["fashion-mnist"][path.name if path.suffix == ".gz" else path.name + ".gz"]
        assert hashlib.sha256(payload).hexdigest() == source.sha256_gunzip, path
