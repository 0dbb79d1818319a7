"""Defenses beyond adversarial training (issue 23): each one's defining property, the composition grammar
(``jpeg+pgd_at``) and that a transform reaches the run identity and the trained data.

JPEG is checked against an independent path (Pillow writing a real file with the settings spelled out,
read back by a separate decoder call), for near-idempotence and for removing a ±8/255 checkerboard; the
UEraser loss against the maximum recomputed from replayed augmentations; the projection for orthogonality
(with a control that the raw images are not); mixup / cutmix / cutout against their drawn λ, box and square."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from delusive import runtime
from delusive.data import ArrayDataset, make_synthetic
from delusive.defenses import (
    TrainConfig,
    apply_transforms,
    create_defense,
    create_objective,
    create_transform,
    run_identity,
    split_defense,
    with_objective,
)
from delusive.defenses.grayscale import LUMA
from delusive.defenses.jpeg import jpeg_roundtrip
from delusive.defenses.ortho_proj import CENTRE
from delusive.defenses.ueraser import ueraser_augment
from delusive.models import create_model


def _rgb(n: int = 12, size: int = 16, seed: int = 0) -> ArrayDataset:
    """Smooth RGB images (low-frequency gradients per image) as uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    imgs = []
    for _ in range(n):
        a = rng.uniform(0.2, 0.8, size=(3, 3))
        img = a[:, 0, None, None] + 0.15 * a[:, 1, None, None] * yy + 0.15 * a[:, 2, None, None] * xx
        imgs.append(img)
    x = np.clip(np.rint(np.stack(imgs) * 255), 0, 255).astype(np.uint8)
    return ArrayDataset(x, np.arange(n) % 3, 3)


def _checker(shape: tuple[int, ...], amp: float) -> np.ndarray:
    h, w = shape[-2:]
    return amp * np.where((np.add.outer(np.arange(h), np.arange(w)) % 2) == 0, 1.0, -1.0)


# ------------------------------------------------------------------------------------------------- JPEG
@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_equals_an_independent_pillow_file_roundtrip(tmp_path, channels):
    data = _rgb(4) if channels == 3 else make_synthetic(4, 2, (1, 16, 16), seed=1)
    got = create_transform("jpeg", quality=10).apply(data).x
    for i in range(len(data)):
        hwc = data.x[i].transpose(1, 2, 0) if channels == 3 else data.x[i, 0]
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(hwc).save(path, "JPEG", quality=10, subsampling="4:2:0" if channels == 3 else 0)
        ref = np.asarray(Image.open(path))
        ref = ref.transpose(2, 0, 1) if channels == 3 else ref[None]
        np.testing.assert_array_equal(got[i], ref)
    assert not np.array_equal(got, data.x)  # quality 10 is lossy: the comparison above is not vacuous


def test_jpeg_of_float_images_rounds_to_bytes_first():
    data = _rgb(3)
    as_float = ArrayDataset(data.x.astype(np.float32) / 255, data.y, data.num_classes)
    np.testing.assert_array_equal(create_transform("jpeg").apply(as_float).x, create_transform("jpeg").apply(data).x)


def test_jpeg_is_near_idempotent_and_removes_a_high_frequency_pattern():
    data = _rgb(8, size=32)
    pattern = _checker(data.x.shape, 8.0)
    poisoned = np.clip(data.x.astype(np.float64) + pattern, 0, 255).astype(np.uint8)
    once = jpeg_roundtrip(poisoned, 10)
    twice = jpeg_roundtrip(once, 10)
    first_change = np.abs(once.astype(float) - poisoned).mean()
    second_change = np.abs(twice.astype(float) - once).mean()
    assert second_change < 0.35 * first_change  # a second pass changes far less than the first
    # the ±8/255 checkerboard: its correlation with the residual (image − clean JPEG) nearly vanishes
    def corr(imgs: np.ndarray) -> float:
        return float((imgs.astype(float) * np.sign(pattern)).mean())
    clean_jpeg = jpeg_roundtrip(data.x, 10)
    before = corr(poisoned) - corr(data.x)
    after = corr(once) - corr(clean_jpeg)
    assert before > 6.0 and abs(after) < 0.25 * before
    # control: at quality 95 the pattern survives, so the check above can fail
    kept = corr(jpeg_roundtrip(poisoned, 95)) - corr(jpeg_roundtrip(data.x, 95))
    assert kept > 0.5 * before


# ----------------------------------------------------------------------------------- grayscale, bit depth
def test_grayscale_gives_equal_channels_of_the_luma():
    data = _rgb(5)
    g = create_transform("grayscale").apply(data).x
    assert g.shape == data.x.shape and g.dtype == np.uint8
    assert np.array_equal(g[:, 0], g[:, 1]) and np.array_equal(g[:, 1], g[:, 2])
    ref = np.stack([np.asarray(Image.fromarray(img.transpose(1, 2, 0)).convert("L")) for img in data.x])
    assert np.abs(g[:, 0].astype(int) - ref).max() <= 1  # Pillow's integer luma: same weights, rounding apart
    x = data.x.astype(float)
    np.testing.assert_allclose(g[:, 0], LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2], atol=0.5)


def test_grayscale_refuses_one_channel_data():
    with pytest.raises(ValueError, match="grayscale.*3 channels.*got 1"):
        create_transform("grayscale").apply(make_synthetic(4, 2, (1, 8, 8)))


@pytest.mark.parametrize("bits", [1, 2, 3, 8])
def test_bit_depth_quantises_to_2_to_the_bits_levels(bits):
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    out = create_transform("bit_depth", bits=bits).apply(ArrayDataset(x, np.zeros(1, np.int64), 2)).x
    levels = np.unique(out)
    assert len(levels) == 2 ** bits
    assert np.all(levels % 2 ** (8 - bits) == 0) and np.all(out <= x) and np.all(x - out < 2 ** (8 - bits))


@pytest.mark.parametrize("name,params,match", [
    ("jpeg", {"quality": 0}, "quality must be an integer in"), ("jpeg", {"quality": 96}, "quality"),
    ("bit_depth", {"bits": 0}, "bits must be an integer in"), ("bit_depth", {"bits": 2.5}, "bits"),
    ("ortho_proj", {"fit_epochs": 0}, "fit_epochs"), ("ortho_proj", {"fit_lr": -1}, "fit_lr"),
    ("jpeg", {"q": 3}, "unknown parameter"),
])
def test_transforms_refuse_bad_params(name, params, match):
    with pytest.raises(ValueError, match=match):
        create_transform(name, **params)


# ------------------------------------------------------------------------------------------ ortho_proj
def test_ortho_proj_leaves_images_orthogonal_to_the_fitted_class_directions():
    clean = make_synthetic(300, 4, (1, 12, 12), seed=3)
    # a P3-like class-wise additive shortcut: a linear model separates it along 4 directions
    rng = np.random.default_rng(0)
    shortcut = rng.choice([-0.12, 0.12], size=(4, 1, 12, 12))
    x = np.clip(clean.float_x() + shortcut[clean.y], 0, 1).astype(np.float32)
    data = ArrayDataset(x, clean.y, 4)
    t = create_transform("ortho_proj", fit_epochs=10)
    out = t.apply(data, seed=0)
    q = t.last_basis
    assert q is not None and q.shape == (144, 4)
    np.testing.assert_allclose((q.T @ q).numpy(), np.eye(4), atol=1e-5)
    centred_out = torch.from_numpy(out.x.reshape(len(out), -1)) - CENTRE
    centred_in = torch.from_numpy(x.reshape(len(x), -1)) - CENTRE
    assert float((centred_out @ q).abs().max()) < 1e-4  # orthogonal to every class direction
    assert float((centred_in @ q).abs().mean()) > 0.05  # control: the raw images are not
    assert out.x.dtype == np.float32 and out.x.min() >= 0 and out.x.max() <= 1 and t.last_residual < 1e-4
    # the nearest such image: no valid orthogonal image is closer (the plain projection, clipped, is one
    # candidate; it is not orthogonal, and the pixel change of the result is no larger than needed)
    flat_in = torch.from_numpy(x.reshape(len(x), -1))
    projected = centred_in - (centred_in @ q) @ q.T + CENTRE
    moved = (torch.from_numpy(out.x.reshape(len(out), -1)) - flat_in).norm(dim=1)
    assert torch.all(moved >= (projected - flat_in).norm(dim=1) - 1e-4)  # ≥ the unconstrained projection's move
    assert float(((projected.clamp(0, 1) - CENTRE) @ q).abs().max()) > 1e-3  # clipping alone is not orthogonal
    np.testing.assert_array_equal(out.y, data.y)
    again = create_transform("ortho_proj", fit_epochs=10).apply(data, seed=0)
    np.testing.assert_array_equal(out.x, again.x)  # seeded: same data, same seed, same bytes


# ------------------------------------------------------------------------------------------- UEraser
class _Lin(nn.Module):
    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("channels", [1, 3])
def test_ueraser_loss_is_the_maximum_over_its_k_copies(channels):
    torch.manual_seed(0)
    x = runtime.rand((16, channels, 12, 12), runtime.generator(1))
    y = runtime.arange(16) % 4
    model = _Lin(channels * 144, 4)
    obj = create_objective("ueraser", copies=5)
    obj.begin_epoch(0, 3)
    out = obj.loss(model, x, y, runtime.arange(16), runtime.generator(7))
    gen = runtime.generator(7)  # replay the same draws: the copies the objective saw
    per_copy = torch.stack([F.cross_entropy(model(ueraser_augment(x, gen)), y, reduction="none") for _ in range(5)])
    torch.testing.assert_close(out.loss, per_copy.max(0).values.mean())
    assert float(out.loss.detach()) > float(per_copy.detach().mean()) + 1e-4  # max ≠ mean: can fail
    copies = [ueraser_augment(x, g) for g in (runtime.generator(3), runtime.generator(4))]
    assert not torch.equal(copies[0], copies[1]) and not torch.equal(copies[0], x)
    assert all(float(c.min()) >= 0 and float(c.max()) <= 1 and c.shape == x.shape for c in copies)


def test_ueraser_lite_is_one_copy_and_repeat_fraction_switches_to_one():
    x = runtime.rand((8, 1, 10, 10), runtime.generator(2))
    y = runtime.arange(8) % 2
    model = _Lin(100, 2)
    lite = create_objective("ueraser_lite")
    ref = F.cross_entropy(model(ueraser_augment(x, runtime.generator(5))), y)
    torch.testing.assert_close(lite.loss(model, x, y, None, runtime.generator(5)).loss, ref)
    half = create_objective("ueraser", copies=3, repeat_fraction=0.5)
    half.begin_epoch(0, 4)
    assert half.copies_now() == 3
    half.begin_epoch(2, 4)
    assert half.copies_now() == 1
    torch.testing.assert_close(half.loss(model, x, y, None, runtime.generator(5)).loss, ref)


# --------------------------------------------------------------------------------- mixup, cutmix, cutout
def test_mixup_mixes_inputs_and_labels_with_the_drawn_lambda():
    x = runtime.rand((10, 1, 6, 6), runtime.generator(0))
    y = runtime.arange(10) % 3
    model = _Lin(36, 3)
    obj = create_objective("mixup", alpha=0.4)
    xm, y_a, y_b, lam = obj.mix(x, y, runtime.generator(11))
    assert 0 < lam < 1
    # recover the pairing from y_b and check every mixed image is λx + (1−λ)x_π for some π consistent with y_b
    for i in range(10):
        cands = [j for j in range(10) if torch.allclose(xm[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)]
        assert cands and int(y_b[i]) == int(y[cands[0]])
    out = create_objective("mixup", alpha=0.4).loss(model, x, y, None, runtime.generator(11))  # the same draws
    assert out.stats["lam"] == lam
    soft = lam * F.one_hot(y_a, 3).float() + (1 - lam) * F.one_hot(y_b, 3).float()
    logits = model(xm)
    torch.testing.assert_close(out.loss, -(soft * F.log_softmax(logits, 1)).sum(1).mean())
    lams = {create_objective("mixup", alpha=0.4).mix(x, y, runtime.generator(s))[3] for s in range(5)}
    assert len(lams) == 5  # λ is drawn, not fixed


def test_cutmix_box_area_matches_the_corrected_lambda():
    x = runtime.rand((6, 3, 16, 16), runtime.generator(0))
    y = runtime.arange(6) % 2
    obj = create_objective("cutmix", prob=1.0)
    seen_box = False
    for s in range(6):
        xm, _, _, lam, box = obj.mix(x, y, runtime.generator(s))
        assert box is not None
        y0, y1, x0, x1 = box
        changed = torch.zeros(16, 16, dtype=torch.bool)
        changed[y0:y1, x0:x1] = True
        assert abs((1 - lam) - float(changed.float().mean())) < 1e-9  # λ' = 1 − box area / image area
        torch.testing.assert_close(xm[..., ~changed], x[..., ~changed])  # outside the box: untouched
        seen_box |= (y1 - y0) * (x1 - x0) > 0
    assert seen_box
    off = create_objective("cutmix", prob=0.0)
    xm, _, _, lam, box = off.mix(x, y, runtime.generator(0))
    assert box is None and lam == 1.0 and torch.equal(xm, x)


def test_cutout_zeros_one_square():
    x = runtime.ones((64, 1, 20, 20))
    out = create_objective("cutout", size=6).cut(x, runtime.generator(3))
    full = 0
    for img in out[:, 0]:
        zero = img == 0
        rows, cols = torch.nonzero(zero.any(1)).flatten(), torch.nonzero(zero.any(0)).flatten()
        assert len(rows) > 0
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(zero.sum()) == h * w and h <= 6 and w <= 6  # one axis-aligned rectangle, at most the square
        full += h == 6 and w == 6
        assert torch.all(img[~zero] == 1)
    assert full > 10  # away from the border it is the whole 6×6 square


@pytest.mark.parametrize("name,params,match", [
    ("ueraser", {"copies": 0}, "copies must be an integer >= 1"), ("ueraser", {"repeat_fraction": 2}, "repeat"),
    ("mixup", {"alpha": 0}, "alpha must be a finite number > 0"), ("cutmix", {"prob": 1.5}, "prob"),
    ("cutout", {"size": 0}, "size must be an integer >= 1"),
])
def test_loss_defenses_refuse_bad_params(name, params, match):
    with pytest.raises(ValueError, match=match):
        create_objective(name, **params)


# ------------------------------------------------------------------------------------------ composition
def test_composition_grammar():
    assert split_defense("jpeg") == (["jpeg"], "standard")
    assert split_defense("jpeg+pgd_at") == (["jpeg"], "pgd_at")
    assert split_defense("bit_depth+jpeg+ueraser") == (["bit_depth", "jpeg"], "ueraser")
    assert split_defense("mixup") == ([], "mixup")
    for bad, match in [("pgd_at+jpeg", "objectives come last"), ("jpeg+nope", "unknown name"),
                       ("jpeg+jpeg", "twice"), ("jpeg++pgd_at", "bad name"), ("pgd_at+trades", "objectives come")]:
        with pytest.raises(ValueError, match=match):
            split_defense(bad)
    assert with_objective("jpeg+pgd_at", "standard") == "jpeg" and with_objective("pgd_at", "standard") == "standard"


def test_composite_params_route_to_their_component_and_enter_the_identity():
    obj = create_defense("jpeg+pgd_at", "linf", "0.1", quality=30, steps=2)
    assert obj.name == "pgd_at" and obj.steps == 2 and obj.transforms[0].quality == 30
    d = obj.describe()
    assert d["transforms"] == [{"name": "jpeg", "params": {"quality": 30}}]
    plain = create_defense("pgd_at", "linf", "0.1", steps=2)
    assert "transforms" not in plain.describe()  # plain objectives keep their old identity
    data = make_synthetic(20, 2, (1, 8, 8))
    model = create_model("mlp", 2, 1, 8)
    cfg = TrainConfig(epochs=1)
    assert run_identity(obj, cfg, data, model) != run_identity(plain, cfg, data, model)
    q = create_defense("bit_depth+cutmix", **{"cutmix.prob": 1.0, "bits": 3})
    assert q.prob == 1.0 and q.transforms[0].bits == 3
    with pytest.raises(ValueError, match="unknown parameter.*allowed: jpeg: quality; pgd_at: steps"):
        create_defense("jpeg+pgd_at", "linf", "0.1", beta=1)
    with pytest.raises(ValueError, match="'nope' which is not one of its components|names 'nope'"):
        create_defense("jpeg", **{"nope.quality": 3})


def test_apply_transforms_runs_left_to_right():
    data = _rgb(4)
    obj = create_defense("bit_depth+grayscale", bits=2)
    got = apply_transforms(obj, data).x
    ref = create_transform("grayscale").apply(create_transform("bit_depth", bits=2).apply(data)).x
    np.testing.assert_array_equal(got, ref)
    assert apply_transforms(create_objective("standard"), data) is data


def test_pipeline_trains_on_the_transformed_set(tmp_path, monkeypatch):
    import delusive.experiments.pipeline as pl
    from delusive.experiments.pipeline import EvalPlan, RunOptions, train_and_evaluate

    data = make_synthetic(120, 2, (1, 8, 8), seed=4)
    test = make_synthetic(40, 2, (1, 8, 8), seed=4, sample_seed=9)
    seen: list[str] = []
    real_fit = pl.fit

    def spy(model, train, objective, cfg, **kw):  # type: ignore[no-untyped-def]
        seen.append(train.sha256())
        levels = np.unique(train.x)
        assert len(levels) <= 2  # bit_depth with 1 bit reached the data the loop trains on
        return real_fit(model, train, objective, cfg, **kw)

    monkeypatch.setattr(pl, "fit", spy)
    m = train_and_evaluate("mlp", data, test, create_defense("bit_depth", bits=1), TrainConfig(epochs=1),
                           EvalPlan(val_size=10), tmp_path / "run", RunOptions(device="cpu"))
    assert seen and seen[0] != data.sha256() and m["transform_time_s"] >= 0


def test_ortho_proj_in_chunks_matches_one_pass(monkeypatch):
    import delusive.defenses.ortho_proj as op

    data = make_synthetic(200, 4, (1, 10, 10), seed=5)
    whole = create_transform("ortho_proj", fit_epochs=3).apply(data, seed=1).x
    monkeypatch.setattr(op, "_CHUNK", 48)
    t = create_transform("ortho_proj", fit_epochs=3)
    parts = t.apply(data, seed=1).x
    np.testing.assert_allclose(parts, whole, atol=1e-4)
    assert t.last_residual < 1e-4


@pytest.mark.parametrize("name", ["jpeg", "ortho_proj"])
def test_a_transformed_run_resumes_from_its_own_checkpoint(tmp_path, name):
    """The transform is deterministic, so a rerun into the same directory finds its own checkpoint (same run
    identity) instead of refusing it as another run's."""
    from delusive.experiments.pipeline import EvalPlan, RunOptions, train_and_evaluate

    data = make_synthetic(100, 2, (1, 8, 8), seed=6)
    params = {"fit_epochs": 2} if name == "ortho_proj" else {}
    args = ("mlp", data, None, create_defense(name, **params), TrainConfig(epochs=1), EvalPlan(val_size=0),
            tmp_path / "run", RunOptions(device="cpu"))
    first = train_and_evaluate(*args)
    with pytest.warns(UserWarning, match="nothing to train"):
        again = train_and_evaluate(*args)
    assert again["selected_epoch"] == first["selected_epoch"] == 1
    other = create_defense(name, **({"fit_epochs": 3} if name == "ortho_proj" else {"quality": 50}))
    with pytest.raises(ValueError, match="different run"):  # control: other params are another run
        train_and_evaluate(args[0], data, None, other, *args[4:])
