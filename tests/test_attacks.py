"""Attacks P1-P5 as artifacts: labels and budget kept in both storage modes, seeded bytes, the intended
effect on the crafting model, class-wise structure, the budget guard, tamper detection, PNG round trip."""

import numpy as np
import pytest
import torch

from delusive.attacks import (
    BudgetError,
    build_artifact,
    create_attack,
    export_png,
    import_poison,
    load_artifact,
    quantise_toward_clean,
    save_artifact,
    verify_artifact,
)
from delusive.evaluation import predict
from delusive.threat import L2Ball, LinfBall, Masked, half_mask

FAST = {"P1": {"steps": 5}, "P2": {"steps": 5}, "P3": {"iterations": 15, "batch_size": 32},
        "P4": {"iterations": 15, "batch_size": 32}, "P5": {}, "clean": {}}
THREATS = [LinfBall(0.1), L2Ball(1.0)]


def _craft(name, synth, model, threat, seed=0):
    atk = create_attack(name, **FAST[name])
    return atk, atk.craft(synth, threat, model if atk.needs_model else None, seed=seed)


@pytest.mark.parametrize("storage", ["uint8", "float32"])
@pytest.mark.parametrize("threat", THREATS, ids=repr)
@pytest.mark.parametrize("name", ["clean", "P1", "P2", "P3", "P4", "P5"])
def test_artifact_keeps_labels_and_budget(name, threat, storage, synth, synth_model, tmp_path):
    atk, res = _craft(name, synth, synth_model, threat)
    art = build_artifact(synth, res.x, threat, attack=name, attack_params=atk.params(), dataset="synthetic",
                         seed=0, storage=storage, class_deltas=res.class_deltas)
    save_artifact(art, tmp_path)
    loaded = load_artifact(tmp_path)
    assert np.array_equal(loaded.labels, synth.y)
    assert loaded.images.dtype == (np.uint8 if storage == "uint8" else np.float32)
    xp = torch.from_numpy(loaded.images.astype(np.float32) / (255.0 if storage == "uint8" else 1.0))
    xc = torch.from_numpy(synth.float_x())
    assert float(threat.norm(xp - xc).max()) <= threat.eps + 1e-5
    assert float(xp.min()) >= 0 and float(xp.max()) <= 1
    report = verify_artifact(tmp_path, synth)
    assert report.ok, report.problems
    if name != "clean":
        assert report.norm_stats["max"] > 0.5 * threat.eps  # the attack did use its budget


@pytest.mark.parametrize("name", ["P1", "P3", "P5"])
def test_same_seed_gives_identical_bytes(name, synth, synth_model, tmp_path):
    paths = []
    for run in ("a", "b"):
        atk, res = _craft(name, synth, synth_model, LinfBall(0.1), seed=3)
        art = build_artifact(synth, res.x, LinfBall(0.1), attack=name, attack_params=atk.params(),
                             dataset="synthetic", seed=3, class_deltas=res.class_deltas)
        paths.append(save_artifact(art, tmp_path / run))
    for f in ("images.npy", "labels.npy", "manifest.json"):
        assert (paths[0] / f).read_bytes() == (paths[1] / f).read_bytes()


def test_attacks_have_their_intended_effect_on_the_crafting_model(synth, synth_model):
    threat = LinfBall(0.15)
    x, y = synth.tensors()
    clean_acc = float((predict(synth_model, x) == y).float().mean())
    acc = {}
    for name in ("P1", "P2", "P4"):
        _, res = _craft(name, synth, synth_model, threat)
        acc[name] = float((predict(synth_model, torch.from_numpy(res.x)) == y).float().mean())
    assert acc["P1"] < clean_acc - 0.2
    assert acc["P2"] >= clean_acc and acc["P4"] >= clean_acc
    assert acc["P2"] > acc["P1"]
    # P2/P4 make the true class *easier*: the crafting model's loss on the true label falls
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        base = ce(synth_model(x), y)
    for name, sign in (("P2", -1), ("P4", -1), ("P1", 1)):
        _, res = _craft(name, synth, synth_model, threat)
        with torch.no_grad():
            after = ce(synth_model(torch.from_numpy(res.x)), y)
        assert sign * (after - base) > 0.05, (name, float(base), float(after))


@pytest.mark.parametrize("name", ["P3", "P4", "P5"])
def test_classwise_perturbations_are_identical_within_a_class(name, synth, synth_model):
    _, res = _craft(name, synth, synth_model, L2Ball(1.0))
    assert res.class_deltas is not None and res.class_deltas.shape == (synth.num_classes, *synth.shape)
    expected = np.clip(synth.float_x() + res.class_deltas[synth.y], 0, 1)
    np.testing.assert_allclose(res.x, expected, atol=1e-6)
    norms = np.linalg.norm(res.class_deltas.reshape(synth.num_classes, -1), axis=1)
    assert (norms <= 1.0 + 1e-5).all()
    if name == "P5":
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)  # ℓ2 P5: norm exactly ε
    if name == "P3":
        _, p4 = _craft("P4", synth, synth_model, L2Ball(1.0))
        np.testing.assert_allclose(res.class_deltas, np.roll(p4.class_deltas, -1, axis=0), atol=1e-6)


def test_masked_threat_keeps_outside_of_mask(synth, synth_model):
    threat = Masked(LinfBall(0.3), half_mask(synth.shape, "top"))
    _, res = _craft("P1", synth, synth_model, threat)
    assert np.array_equal(res.x[:, :, 8:], synth.float_x()[:, :, 8:])
    art = build_artifact(synth, res.x, threat, attack="P1", attack_params={}, dataset="synthetic", seed=0)
    assert art.mask is not None


def test_broken_attack_is_caught_before_anything_is_written(tmp_path, monkeypatch):
    from delusive.attacks import ATTACKS, Attack, CraftResult
    from delusive.experiments.poisoning import make_poison

    class Broken(Attack):
        name = "broken"
        needs_model = False

        def craft(self, train, threat, model, seed=0, work_dir=None):
            return CraftResult(np.clip(train.float_x() + 2 * threat.eps, 0, 1))

    monkeypatch.setitem(ATTACKS._items, "broken", Broken)
    with pytest.raises(BudgetError, match="exceed linf eps=0.1"):
        make_poison("broken", "synthetic", LinfBall(0.1), tmp_path / "out", train_subset=50)
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not (tmp_path / "out" / "images.npy").exists()


def test_tampered_artifact_fails_verify(synth, tmp_path):
    _, res = _craft("P5", synth, None, LinfBall(0.1))
    art = build_artifact(synth, res.x, LinfBall(0.1), attack="P5", attack_params={}, dataset="synthetic",
                         seed=0, class_deltas=res.class_deltas)
    save_artifact(art, tmp_path)
    images = np.load(tmp_path / "images.npy")
    images[7, 0, 3, 3] = 255 if images[7, 0, 3, 3] < 128 else 0
    np.save(tmp_path / "images.npy", images)
    report = verify_artifact(tmp_path, synth)
    assert not report.ok
    assert any("payload hash mismatch" in p for p in report.problems)
    assert report.offending["over_budget"] == [7]


def test_quantisation_rounds_toward_zero():
    clean = np.array([[10, 200, 0, 255]], dtype=np.uint8)
    poisoned = (clean.astype(np.float32) + np.array([[2.9, -2.9, 3.5, -0.4]], dtype=np.float32)) / 255
    q = quantise_toward_clean(clean, poisoned)
    assert q.tolist() == [[12, 198, 3, 255]]


def test_png_export_import_round_trips_exactly(synth, tmp_path):
    _, res = _craft("P5", synth, None, LinfBall(0.1))
    art = build_artifact(synth, res.x, LinfBall(0.1), attack="P5", attack_params={}, dataset="synthetic", seed=0)
    save_artifact(art, tmp_path / "art")
    assert export_png(tmp_path / "art", tmp_path / "png") == len(synth)
    back = import_poison(tmp_path / "png", synth, LinfBall(0.1), dataset="synthetic")
    assert np.array_equal(back.images, art.images) and np.array_equal(back.labels, art.labels)


def test_import_npy_noise_per_class_and_rejects_over_budget(synth, tmp_path):
    noise = np.full((synth.num_classes, *synth.shape), 0.05, dtype=np.float32)
    np.save(tmp_path / "noise.npy", noise)
    art = import_poison(tmp_path / "noise.npy", synth, LinfBall(0.1), dataset="synthetic")
    assert art.manifest["attack_params"]["kind"] == "per-class-noise"
    np.save(tmp_path / "big.npy", noise * 4)
    with pytest.raises(BudgetError):
        import_poison(tmp_path / "big.npy", synth, LinfBall(0.1), dataset="synthetic")


def test_unknown_attack_params_are_rejected():
    with pytest.raises(ValueError, match="unknown parameter"):
        create_attack("P1", iterations=3)
    with pytest.raises(ValueError, match="attack: unknown name 'P9'"):
        create_attack("P9")


def test_editing_the_claimed_budget_fails_verify(synth, tmp_path):
    import json

    _, res = _craft("P5", synth, None, LinfBall(0.1))
    save_artifact(build_artifact(synth, res.x, LinfBall(0.1), attack="P5", attack_params={}, dataset="synthetic",
                                 seed=0, class_deltas=res.class_deltas), tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["threat"]["eps_text"], m["threat"]["eps"] = "0.5", 0.5
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    report = verify_artifact(tmp_path, synth)
    assert not report.ok and "payload hash mismatch in manifest.json" in report.problems[0]


def test_verify_against_an_expected_budget(synth, tmp_path):
    _, res = _craft("P5", synth, None, LinfBall(0.1))
    save_artifact(build_artifact(synth, res.x, LinfBall(0.1), attack="P5", attack_params={}, dataset="synthetic",
                                 seed=0, class_deltas=res.class_deltas), tmp_path)
    assert verify_artifact(tmp_path, synth, LinfBall(0.1)).ok
    strict = verify_artifact(tmp_path, synth, LinfBall(0.05))
    assert not strict.ok and strict.offending["over_budget"]


def test_label_shape_is_checked_before_comparing(synth):
    from delusive.attacks import check_budget

    report = check_budget(synth, synth.x, synth.y[:, None], LinfBall(0.1))
    assert not report.ok and "labels have shape" in report.problems[0]


def test_crafting_resumes_after_a_kill(synth, synth_model, tmp_path, monkeypatch):
    import delusive.attacks.resume as resume

    atk = create_attack("P1", steps=3, batch_size=100)
    full = atk.craft(synth, LinfBall(0.1), synth_model, seed=0).x
    monkeypatch.setattr(resume.CraftCheckpoint, "due", lambda self: True)  # checkpoint after every batch
    calls = {"n": 0}
    real_pgd = __import__("delusive.attacks.per_sample", fromlist=["pgd"]).pgd

    def dying_pgd(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_pgd(*a, **k)

    monkeypatch.setattr("delusive.attacks.per_sample.pgd", dying_pgd)
    with pytest.raises(KeyboardInterrupt):
        atk.craft(synth, LinfBall(0.1), synth_model, seed=0, work_dir=tmp_path)
    assert (tmp_path / "craft_state.json").exists()
    calls["n"] = -100
    resumed = atk.craft(synth, LinfBall(0.1), synth_model, seed=0, work_dir=tmp_path).x
    assert calls["n"] == -100 + 3  # only the 3 unfinished batches of 6 were crafted again
    assert np.array_equal(resumed, full)
    assert (tmp_path / "craft_state.json").exists()  # kept until the artifact is on disk (make_poison clears it)
    resume.clear_craft_state(tmp_path)
    assert not list(tmp_path.glob("craft_*"))


def test_png_import_rejects_bad_tables(synth, tmp_path):
    (tmp_path / "labels.csv").write_text("name,y\n000000.png,0\n")
    with pytest.raises(ValueError, match="expected columns filename,label"):
        import_poison(tmp_path, synth, LinfBall(0.1), dataset="synthetic")
    (tmp_path / "labels.csv").write_text("filename,label\ncat.png,0\n")
    with pytest.raises(ValueError, match="named by its training index"):
        import_poison(tmp_path, synth, LinfBall(0.1), dataset="synthetic")
