"""ArrayDataset validation and hashing, make_synthetic, and the tensor loader's order, augmentation and replay."""

import numpy as np
import pytest
import torch

from delusive.data import ArrayDataset, TensorLoader, make_synthetic, random_crop, random_hflip
from delusive.utils.seeding import derive_seed


def _xy(n=50, hw=8):
    x = torch.rand(n, 1, hw, hw, generator=torch.Generator().manual_seed(0))
    return x, torch.arange(n) % 5


# ---------------------------------------------------------------- TensorLoader


def test_every_index_exactly_once_per_epoch_without_drop_last():
    x, y = _xy(50)
    loader = TensorLoader(x, y, 16, seed=3, crop_padding=2, hflip=True)
    batches = list(loader.epoch_with_indices(0))
    assert len(loader) == len(batches) == 4 and [len(b[2]) for b in batches] == [16, 16, 16, 2]
    seen = torch.cat([idx for _, _, idx in batches])
    assert sorted(seen.tolist()) == list(range(50))
    assert all(torch.equal(yb, y[idx]) for _, yb, idx in batches)
    dropped = TensorLoader(x, y, 16, drop_last=True)
    assert len(dropped) == 3 and sum(len(b[2]) for b in dropped.epoch_with_indices(0)) == 48


def test_same_seed_and_epoch_replay_exactly_other_epochs_and_seeds_differ():
    x, y = _xy()
    mk = lambda seed: TensorLoader(x, y, 16, seed=seed, crop_padding=2, hflip=True)  # noqa: E731
    a = list(mk(3).epoch_with_indices(1))
    fresh = mk(3)
    for _ in fresh.epoch(0):  # a resumed run starts at epoch 1 without having seen epoch 0: same batches
        pass
    b = list(fresh.epoch_with_indices(1))
    assert all(torch.equal(p, q) for pa, pb in zip(a, b, strict=True) for p, q in zip(pa, pb, strict=True))
    c = list(mk(3).epoch_with_indices(2))
    d = list(mk(4).epoch_with_indices(1))
    assert not torch.equal(a[0][2], c[0][2]) and not torch.equal(a[0][2], d[0][2])
    assert not torch.equal(a[0][0], c[0][0])


def test_epoch_randomness_comes_from_derive_seed():
    x, y = _xy(20)
    idx = next(TensorLoader(x, y, 20, seed=7).epoch_with_indices(5))[2]
    assert torch.equal(idx, torch.randperm(20, generator=torch.Generator().manual_seed(derive_seed(7, "loader", 5))))


def test_no_augmentation_is_identity_and_no_shuffle_keeps_order():
    x, y = _xy()
    for xb, yb, idx in TensorLoader(x, y, 16, shuffle=True, seed=1).epoch_with_indices(0):
        assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
    ordered = torch.cat([idx for _, _, idx in TensorLoader(x, y, 16, shuffle=False).epoch_with_indices(3)])
    assert torch.equal(ordered, torch.arange(50))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(TensorLoader(x, y, 8), TensorLoader(x, y, 8).epoch(0),
                                                       strict=True))


def test_crop_keeps_shape_and_shifts_content_like_a_padded_window():
    x, _ = _xy(64, hw=6)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    g = torch.Generator().manual_seed(0)  # the same draws, replayed: dy for all, then dx for all
    dy, dx = torch.randint(0, 5, (64,), generator=g), torch.randint(0, 5, (64,), generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(64):  # reference: a per-sample window of the zero-padded image
        assert torch.equal(out[i], padded[i, :, dy[i] : dy[i] + 6, dx[i] : dx[i] + 6])
    assert len({(int(a), int(b)) for a, b in zip(dy, dx, strict=True)}) > 10
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_flip_mirrors_about_half_of_the_images():
    x, _ = _xy(200, hw=5)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 60 < int(mirrored.sum()) < 140


def test_loader_validates_its_arguments():
    x, y = _xy(10)
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(x, y, 0)
    with pytest.raises(ValueError, match="crop_padding"):
        TensorLoader(x, y, 4, crop_padding=-1)
    with pytest.raises(ValueError, match="y: must have shape"):
        TensorLoader(x, y[:5], 4)


# ---------------------------------------------------------------- ArrayDataset


def test_arraydataset_accessors():
    ds = make_synthetic(20, 4, (1, 8, 8), seed=1)
    assert len(ds) == 20 and ds.shape == (1, 8, 8) and ds.label_histogram().tolist() == [5, 5, 5, 5]
    f = ds.float_x()
    assert f.dtype == np.float32 and np.allclose(f * 255, ds.x)
    x, y = ds.tensors()
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and tuple(x.shape) == (20, 1, 8, 8)
    sub = ds.subset(np.array([3, 1]))
    assert np.array_equal(sub.y, ds.y[[3, 1]]) and np.array_equal(sub.x, ds.x[[3, 1]])
    fl = ArrayDataset(f, ds.y.astype(np.uint8), 4, classes=["a", "b", "c", "d"])
    assert fl.y.dtype == np.int64 and fl.float_x() is f and fl.classes == ("a", "b", "c", "d")


def test_arraydataset_validation():
    ds = make_synthetic(20, 4, (1, 8, 8), seed=1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        ArrayDataset(ds.x, ds.y + 4, 4)
    with pytest.raises(ValueError, match="float images must lie in"):
        ArrayDataset(ds.float_x() * 2, ds.y, 4)
    with pytest.raises(ValueError, match="float images must lie in"):
        ArrayDataset(np.full((20, 1, 8, 8), np.nan, np.float32), ds.y, 4)
    with pytest.raises(ValueError, match="N×C×H×W"):
        ArrayDataset(ds.x[:, 0], ds.y, 4)
    with pytest.raises(ValueError, match="uint8 or float32"):
        ArrayDataset(ds.x.astype(np.float64), ds.y, 4)
    with pytest.raises(ValueError, match="y must hold integers"):
        ArrayDataset(ds.x, ds.y.astype(np.float64), 4)
    with pytest.raises(ValueError, match=r"y must have shape \(20,\)"):
        ArrayDataset(ds.x, ds.y[:3], 4)
    with pytest.raises(ValueError, match="3 class names for 4 classes"):
        ArrayDataset(ds.x, ds.y, 4, classes=("a", "b", "c"))
    with pytest.raises(TypeError, match="numpy arrays"):
        ArrayDataset(torch.from_numpy(ds.x), ds.y, 4)


def test_sha256_is_stable_and_content_addressed():
    ds = make_synthetic(20, 4, (1, 8, 8), seed=1)
    assert ds.sha256() == make_synthetic(20, 4, (1, 8, 8), seed=1).sha256()
    assert ds.sha256() != make_synthetic(20, 4, (1, 8, 8), seed=2).sha256()
    assert ds.sha256() == ArrayDataset(ds.x.copy(), ds.y.copy(), 4, name="renamed").sha256()
    assert ds.sha256() != ArrayDataset(ds.x, ds.y, 5).sha256()
    assert ds.sha256() != ArrayDataset(ds.float_x(), ds.y, 4).sha256()
    tiny = ArrayDataset(np.arange(8, dtype=np.uint8).reshape(2, 1, 2, 2), np.array([0, 1]), 2)
    # pinned: changing the hash recipe invalidates every cache keyed on it, so it must be deliberate
    assert tiny.sha256() == "34e9ff8700fd2609c0ba19fa775f08ab22886eb962c1098d852ef85a6b51c121"


def test_make_synthetic_sample_seed_draws_the_same_task():
    a = make_synthetic(400, 4, (1, 8, 8), seed=0)
    b = make_synthetic(400, 4, (1, 8, 8), seed=0, sample_seed=1)
    c = make_synthetic(400, 4, (1, 8, 8), seed=5)
    mean = lambda d, k: d.float_x()[d.y == k].mean(0)  # noqa: E731
    assert all(np.abs(mean(a, k) - mean(b, k)).max() < 0.2 for k in range(4))
    assert any(np.abs(mean(a, k) - mean(c, k)).max() > 0.3 for k in range(4))
    assert not np.array_equal(a.x, b.x)
