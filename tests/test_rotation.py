"""Rotation views (Gidaris et al. 2018; paper Sec. 5.2): exact rotated copies, labels, layout, catalog names."""

import numpy as np
import pytest
import torch

from delusive.data import ArrayDataset, dataset_info, load_dataset, make_synthetic
from delusive.data.rotation import ROTATIONS, rotation_dataset


def test_rotated_copies_are_exactly_the_base_images_turned_by_torch_rot90():
    base = make_synthetic(7, num_classes=3, shape=(3, 9, 9), seed=4)
    rot = rotation_dataset(base)
    n = len(base)
    assert len(rot) == 4 * n and rot.num_classes == 4 and rot.shape == base.shape and rot.x.dtype == np.uint8
    assert rot.y.tolist() == [k for k in range(4) for _ in range(n)]
    assert (rot.label_histogram() == n).all()
    assert rot.classes == ROTATIONS == ("0°", "90°", "180°", "270°")
    for k in range(4):
        expected = torch.rot90(torch.from_numpy(base.x), k, dims=(2, 3)).numpy()
        assert rot.x[k * n : (k + 1) * n].tobytes() == np.ascontiguousarray(expected).tobytes()
    # control: every quarter turn really changes these (random, asymmetric) images
    for k in (1, 2, 3):
        assert not np.array_equal(rot.x[k * n : (k + 1) * n], base.x)


def test_rotation_direction_is_counter_clockwise_top_row_becomes_left_column():
    img = np.array([[1, 2], [3, 4]], dtype=np.uint8).reshape(1, 1, 2, 2)
    rot = rotation_dataset(ArrayDataset(img, np.zeros(1, np.int64), 1))
    assert rot.x[1, 0].tolist() == [[2, 4], [1, 3]]  # 90°: the top row (1, 2) is now the left column, read upwards
    assert rot.x[2, 0].tolist() == [[4, 3], [2, 1]]
    assert rot.x[3, 0].tolist() == [[3, 1], [4, 2]]


def test_float_images_keep_their_dtype_and_values():
    x = np.random.default_rng(0).random((3, 1, 5, 5), dtype=np.float32)
    rot = rotation_dataset(ArrayDataset(x, np.array([0, 1, 1]), 2, name="f"))
    assert rot.x.dtype == np.float32 and rot.name == "rot:f"
    assert np.array_equal(rot.x[3:6], np.rot90(x, 1, axes=(2, 3)))


def test_non_square_images_are_refused():
    ds = ArrayDataset(np.zeros((2, 1, 6, 4), np.uint8), np.zeros(2, np.int64), 1, name="tall")
    with pytest.raises(ValueError, match="rotation_dataset: images must be square, got 6×4 in 'tall'"):
        rotation_dataset(ds)
    with pytest.raises(ValueError, match=r"rotation views need square images, mnist-fashion is 56×28"):
        dataset_info("rot:mnist-fashion")
    with pytest.raises(ValueError, match="a rotation view of a rotation view"):
        dataset_info("rot:rot:fashion-mnist")
    with pytest.raises(ValueError, match="unknown name 'nope'"):
        dataset_info("rot:nope")


def test_catalog_rotation_info_keeps_crop_drops_flips():
    info = dataset_info("rot:cifar10")
    assert (info.num_classes, info.shape, info.splits) == (4, (3, 32, 32), ("train", "test"))
    assert (info.crop_padding, info.hflip) == (4, False)  # the base flips; a flip after rotating would mislabel
    assert dataset_info("cifar10").hflip
    svhn = dataset_info("rot:svhn")
    assert svhn.splits == ("train", "test", "extra") and svhn.classes == ROTATIONS


@pytest.mark.realdata
def test_rot_fashion_mnist_loads_the_rotation_view_of_the_base_split():
    base = load_dataset("fashion-mnist", "test")
    rot = load_dataset("rot:fashion-mnist", "test")
    assert rot.name == "rot:fashion-mnist" and rot.num_classes == 4 and len(rot) == 4 * len(base) == 40000
    assert (rot.label_histogram() == 10000).all()
    for k in (0, 1, 3):
        sl = slice(k * 10000, k * 10000 + 500)
        assert np.array_equal(rot.x[sl], np.rot90(base.x[:500], k, axes=(2, 3)))
        assert (rot.y[sl] == k).all()
    with pytest.raises(ValueError, match="split: dataset 'rot:fashion-mnist' has splits train, test"):
        load_dataset("rot:fashion-mnist", "extra")


def test_rot_synthetic_through_the_catalog():
    rot = load_dataset("rot:synthetic", "test")
    base = load_dataset("synthetic", "test")
    assert rot.sha256() == rotation_dataset(base).sha256()
    assert rot.sha256() != rotation_dataset(load_dataset("synthetic", "train")).sha256()  # control: other split
