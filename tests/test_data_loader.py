"""ArrayDataset validation and hashing; the tensor loader's order, augmentation and replayability."""

import numpy as np
import pytest
import torch

from delusive.data import ArrayDataset, TensorLoader, make_synthetic, random_crop


def _xy(n=50):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return x, torch.arange(n) % 5


def test_every_index_once_per_epoch_and_replayable():
    x, y = _xy()
    loader = TensorLoader(x, y, 16, seed=3, crop_padding=2, hflip=True)
    seen = torch.cat([idx for _, _, idx in loader.epoch_with_indices(0)])
    assert sorted(seen.tolist()) == list(range(50)) and len(loader) == 4
    a = [b[0] for b in loader.epoch(1)]
    b = [b[0] for b in loader.epoch(1)]
    c = [b[0] for b in loader.epoch(2)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))


def test_no_augmentation_is_identity():
    x, y = _xy()
    for xb, yb, idx in TensorLoader(x, y, 16, shuffle=True, seed=1).epoch_with_indices(0):
        assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])


def test_crop_shifts_content_and_keeps_shape():
    x = torch.arange(1, 17, dtype=torch.float).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    out = random_crop(x, 1, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert not torch.equal(out, x)
    # every crop is the padded image shifted by at most 1 pixel: the original centre 2×2 block survives
    assert bool((out[:, :, 1:3, 1:3] > 0).all())
    assert bool((out == 0).any())  # some windows reach the zero padding


def test_drop_last_and_bad_batch_size():
    x, y = _xy(50)
    assert len(TensorLoader(x, y, 16, drop_last=True)) == 3
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(x, y, 0)


def test_arraydataset_validation_and_hash():
    ds = make_synthetic(20, 4, (1, 8, 8), seed=1)
    assert ds.sha256() == make_synthetic(20, 4, (1, 8, 8), seed=1).sha256()
    assert ds.sha256() != make_synthetic(20, 4, (1, 8, 8), seed=2).sha256()
    assert ds.label_histogram().sum() == 20
    x, y = ds.tensors()
    assert x.dtype == torch.float32 and float(x.max()) <= 1.0
    with pytest.raises(ValueError, match="labels must lie in"):
        ArrayDataset(ds.x, ds.y + 4, 4)
    with pytest.raises(ValueError, match="float images must lie in"):
        ArrayDataset(ds.float_x() * 2, ds.y, 4)
    with pytest.raises(ValueError, match="N×C×H×W"):
        ArrayDataset(ds.x[:, 0], ds.y, 4)
    sub = ds.subset(np.array([3, 1]))
    assert np.array_equal(sub.y, ds.y[[3, 1]])
