"""The real Fashion-MNIST must be present: this fails (never skips) when it is missing."""

import pytest

from delusive.data import DataNotFoundError, load_dataset

HOW = ("Fashion-MNIST is missing: run `make setup` (it installs the Debian package dataset-fashion-mnist) "
       "or set DELUSIVE_DATA to a folder with the four IDX .gz files")


@pytest.mark.realdata
def test_real_fashion_mnist_loads():
    try:
        train = load_dataset("fashion-mnist", "train")
        test = load_dataset("fashion-mnist", "test")
    except DataNotFoundError as e:
        raise AssertionError(f"{HOW}: {e}") from e
    assert (len(train), len(test)) == (60000, 10000)
    assert train.shape == (1, 28, 28) and train.num_classes == 10
    assert (train.label_histogram() == 6000).all() and (test.label_histogram() == 1000).all()
