"""The field's poisons (EM, EM-class, REM, TAP, SEP, AR, LSP, OPS, CUDA): each one's defining property on a tiny
problem, its budget after storage, its verifier against tampering, resume of EM, and the CLI on Fashion-MNIST."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from delusive.attacks import check_budget, create_attack, load_artifact, verify_artifact
from delusive.attacks.ar import recurrence_residual
from delusive.attacks.artifact import build_artifact, payload_hash
from delusive.attacks.conv_unlearnable import class_filters
from delusive.attacks.defaults import attack_budget, default_attack_params
from delusive.attacks.surrogate import mean_loss
from delusive.cli.main import main
from delusive.data import load_dataset
from delusive.data.dataset import ArrayDataset
from delusive.experiments.poisoning import clean_training_set, make_poison, resolve_attack_threat
from delusive.threat import L0Ball, LinfBall, make_threat

TINY_EM = {"arch": "small-cnn", "train_steps": 5, "pgd_steps": 5, "rel_step_size": 0.2, "batch_size": 100,
           "lr": 0.05, "stop_accuracy": 0.99, "max_rounds": 4}


@pytest.fixture(scope="module")
def tiny() -> ArrayDataset:
    """200 Fashion-MNIST-shaped synthetic images (uint8) of 10 classes."""
    ds = load_dataset("synthetic", "train")
    return ds.subset(np.arange(200))


def _rehash(art: Path) -> None:
    """A forger who recomputes every hash: only the content checks of verify can catch the edit."""
    import hashlib

    m = json.loads((art / "manifest.json").read_text())
    m["files"]["images.npy"] = hashlib.sha256((art / "images.npy").read_bytes()).hexdigest()
    m["payload_sha256"] = payload_hash(m["files"], m)
    (art / "manifest.json").write_text(json.dumps(m))


def _edit_images(art: Path, edit) -> None:  # type: ignore[no-untyped-def]
    x = np.load(art / "images.npy")
    edit(x)
    np.save(art / "images.npy", x)
    _rehash(art)


# --- the l0 ball --------------------------------------------------------------------------------------------
def test_l0_ball_counts_pixel_positions_and_projects_onto_the_largest():
    ball = L0Ball(1, "1")
    d = torch.zeros(2, 3, 4, 4)
    d[0, :, 1, 2] = 0.5  # one position, all channels: one pixel
    d[1, 0, 0, 0], d[1, 2, 3, 3] = 0.1, -0.9  # two positions
    assert ball.norm(d).tolist() == [1.0, 2.0]
    p = ball.project_delta(d)
    assert ball.norm(p).tolist() == [1.0, 1.0]
    assert p[1, 2, 3, 3] == -0.9 and p[1, 0, 0, 0] == 0  # the larger change is kept
    assert torch.equal(p[0], d[0])
    assert make_threat("l0", "1").describe() == ball.describe()
    with pytest.raises(ValueError, match="whole number"):
        L0Ball(1.5)


# --- EM ---------------------------------------------------------------------------------------------------
def test_em_lowers_the_crafting_models_training_loss_below_that_of_clean_data(tiny):
    atk = create_attack("EM", **TINY_EM)
    res = atk.craft(tiny, LinfBall(0.2, "0.2"), None, seed=0)
    model = atk.surrogate.model
    x, y = tiny.tensors()
    clean_loss = mean_loss(model, x, y)
    poisoned_loss = mean_loss(model, torch.from_numpy(res.x), y)
    assert poisoned_loss < 0.85 * clean_loss, (poisoned_loss, clean_loss)  # measured: 1.55 vs 2.09
    assert np.abs(res.x - tiny.float_x()).max() <= 0.2 + 1e-6
    assert res.extra["crafting"]["rounds"] >= 1


def test_em_class_gives_every_image_of_a_class_the_same_perturbation(tiny):
    atk = create_attack("EM-class", **{**TINY_EM, "max_rounds": 2})
    res = atk.craft(tiny, LinfBall(0.2, "0.2"), None, seed=0)
    assert res.class_deltas is not None and res.class_deltas.shape == (10, *tiny.shape)
    expect = np.clip(tiny.float_x() + res.class_deltas[tiny.y], 0, 1)
    np.testing.assert_allclose(res.x, expect, atol=1e-6)


class _Stop(Exception):
    pass


def test_an_interrupted_em_run_resumes_to_the_same_bytes(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DELUSIVE_CHECKPOINT_EVERY_S", "0")
    params = {**TINY_EM, "stop_accuracy": 1.0, "max_rounds": 3}
    threat = LinfBall(0.2, "0.2")
    ref = create_attack("EM", **params).craft(tiny, threat, None, seed=1, work_dir=tmp_path / "ref")
    atk = create_attack("EM", **params)

    def stop(rnd: int) -> None:
        if rnd == 2:
            raise _Stop

    atk.on_round = stop
    (tmp_path / "run").mkdir()
    with pytest.raises(_Stop):
        atk.craft(tiny, threat, None, seed=1, work_dir=tmp_path / "run")
    state = json.loads((tmp_path / "run" / "craft_state.json").read_text())
    assert state["round"] == 2 and {"noise", "model_f", "model_i"} <= set(state["arrays"])
    again = create_attack("EM", **params).craft(tiny, threat, None, seed=1, work_dir=tmp_path / "run")
    assert np.array_equal(again.x, ref.x)
    assert not (tmp_path / "run" / "craft_state.json").exists()


# --- REM, TAP, SEP: budget and effect -----------------------------------------------------------------------
def test_rem_tap_sep_stay_in_budget_and_move_the_images(tiny):
    from delusive.models import create_model

    threat = LinfBall(0.2, "0.2")
    model = create_model("small-cnn", 10, 1, 28, seed=0)
    runs = {"REM": (create_attack("REM", arch="small-cnn", train_steps=3, pgd_steps=2, batch_size=100, max_rounds=2,
                                  adv_eps="0.1", adv_steps=2), None),
            "TAP": (create_attack("TAP", steps=3, rel_step_size=0.3, batch_size=100), model),
            "SEP": (create_attack("SEP", arch="small-cnn", epochs=2, checkpoints=2, steps=3, rel_step_size=0.3,
                                  batch_size=100), None)}
    for name, (atk, m) in runs.items():
        res = atk.craft(tiny, threat, m, seed=0)
        d = np.abs(res.x - tiny.float_x())
        assert d.max() <= 0.2 + 1e-6, name
        assert d.reshape(len(d), -1).max(1).mean() > 0.1, name  # the attack did something


def test_sep_descends_the_mean_cross_entropy_of_its_checkpoints_toward_y_plus_5(tiny):
    from delusive.attacks.sep import CheckpointEnsemble, mean_member_ce
    from delusive.models import create_model

    members = [create_model("small-cnn", 10, 1, 28, seed=s).eval() for s in (0, 1, 2)]
    ens = CheckpointEnsemble(members)
    x, y = tiny.tensors()
    with torch.no_grad():
        got = mean_member_ce(3)(ens(x[:8]), y[:8])
        want = torch.stack([F.cross_entropy(m(x[:8]), y[:8], reduction="none") for m in members]).mean(0)
    torch.testing.assert_close(got, want)
    atk = create_attack("SEP", arch="small-cnn", epochs=2, checkpoints=2, steps=5, rel_step_size=0.3, batch_size=100)
    assert atk.targeted and atk.target_shift == 5
    res = atk.craft(tiny, LinfBall(0.2, "0.2"), None, seed=0)
    assert res.extra["crafting"]["snapshot_epochs"] == [1, 2]
    target = (y + 5) % 10
    with torch.no_grad():
        before = mean_member_ce(2)(atk.ensemble(x), target).mean()
        after = mean_member_ce(2)(atk.ensemble(torch.from_numpy(res.x)), target).mean()
    assert after < before - 0.05, (float(after), float(before))


def test_tap_needs_a_permutation_without_fixed_points(tiny):
    from delusive.models import create_model

    with pytest.raises(ValueError, match="target_shift"):
        create_attack("TAP", steps=1, target_shift=10).craft(tiny, LinfBall(0.1), create_model("small-cnn", 10, 1, 28))


# --- AR ---------------------------------------------------------------------------------------------------
def test_ar_perturbations_follow_their_class_recurrence_and_have_norm_eps(tiny):
    atk = create_attack("AR", crop=4)
    threat = make_threat("l2", "0.5")
    delta, coeffs = atk.perturbations(tiny, threat, seed=0)
    assert coeffs.shape == (10, 1, 3, 3)
    assert torch.allclose(coeffs.sum((-2, -1)), torch.ones(10, 1, dtype=torch.float64))
    _, y = tiny.tensors()
    scale = delta.abs().amax((1, 2, 3), keepdim=True)
    res = recurrence_residual(delta / scale, coeffs[y])
    assert float(res.max()) < 1e-9
    wrong = recurrence_residual(delta / scale, coeffs[(y + 1) % 10])  # another class's recurrence does not fit
    assert float(wrong.amax((1, 2, 3)).min()) > 1e-3
    np.testing.assert_allclose(threat.norm(delta).numpy(), 0.5, rtol=1e-9)
    # stable processes: the energy is spread over the image, not piled up where the raster ends
    e = delta.pow(2)
    tail = (e[:, :, -4:, :].sum((1, 2, 3)) + e[:, :, :, -4:].sum((1, 2, 3))) / e.sum((1, 2, 3))
    assert float(tail.mean()) < 0.4  # 0.265 of the pixels lie there
    out = atk.craft(tiny, threat, None, seed=0)
    np.testing.assert_allclose(out.x, np.clip(tiny.float_x() + delta.numpy(), 0, 1), atol=1e-6)


# --- LSP ----------------------------------------------------------------------------------------------------
def test_lsp_noise_is_patch_constant_class_separable_and_at_eps(tiny):
    atk = create_attack("LSP", patch_size=7)
    threat = make_threat("l2", "0.6588")
    delta, patch = atk.perturbations(tiny, threat, seed=0)
    assert patch == 7
    np.testing.assert_allclose(threat.norm(delta).numpy(), 0.6588, rtol=1e-9)
    blocks = delta.reshape(len(delta), 1, 4, 7, 4, 7)
    assert torch.allclose(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))  # one value per patch
    # linearly separable: the nearest class mean (of the normalised noise) recovers every label
    y = torch.as_tensor(tiny.y)
    flat = delta.reshape(len(delta), -1)
    means = torch.stack([flat[y == k].mean(0) for k in range(10)])
    assert torch.equal(torch.cdist(flat, means).argmin(1), y)
    out = atk.craft(tiny, threat, None, seed=0, chunk=64)  # chunked crafting applies the same noise
    np.testing.assert_allclose(out.x, np.clip(tiny.float_x() + delta.numpy(), 0, 1), atol=1e-6)


# --- OPS ----------------------------------------------------------------------------------------------------
def test_ops_changes_exactly_one_pixel_per_image_at_its_class_position(tiny):
    res = create_attack("OPS").craft(tiny, L0Ball(1, "1"), None, seed=0)
    pos, col = res.extra["ops"]["positions"], res.extra["ops"]["colours"]
    assert len({(tuple(p), tuple(c)) for p, c in zip(pos, col, strict=True)}) == 10
    x = tiny.float_x()
    moved = (np.abs(res.x - x) > 0).any(1)  # N×H×W
    for i in range(len(x)):
        r, c = pos[tiny.y[i]]
        assert moved[i].sum() == (0 if np.allclose(x[i, :, r, c], col[tiny.y[i]]) else 1)
        assert moved[i].sum() == 0 or moved[i, r, c]
        assert np.allclose(res.x[i, :, r, c], col[tiny.y[i]])
    assert moved.reshape(len(x), -1).sum(1).mean() > 0.9


def test_ops_prefers_a_pixel_that_always_deviates_from_the_class(tiny):
    x = np.full((40, 1, 6, 6), 128, np.uint8)
    rng = np.random.default_rng(0)
    x += rng.integers(0, 60, size=x.shape, dtype=np.uint8)
    x[:20, :, 2, 3] = 0  # class 0: one pixel always black, so white there deviates maximally and constantly
    ds = ArrayDataset(x, np.repeat([0, 1], 20).astype(np.int64), 2)
    res = create_attack("OPS").craft(ds, L0Ball(1, "1"), None)
    assert res.extra["ops"]["positions"][0] == [2, 3] and res.extra["ops"]["colours"][0] == [1.0]


# --- CUDA ---------------------------------------------------------------------------------------------------
def test_cuda_images_equal_the_class_filter_applied_to_the_clean_image(tiny):
    atk = create_attack("CUDA", blur_parameter=0.3, kernel_size=3)
    res = atk.craft(tiny, LinfBall(1.0, "1"), None, seed=5)
    w = class_filters(10, 3, 0.3, 1.0, seed=5)
    assert ((w == 1.0).sum((1, 2)) >= 1).all() and float(w.max()) == 1.0 and float(w.min()) >= 0
    x = tiny.float_x()
    for i in (0, 17, 123):
        k = int(tiny.y[i])
        # an independent convolution: sum of shifted copies weighted by the filter, zero padding
        xi = np.pad(x[i, 0].astype(np.float64), 1)
        expect = sum(float(w[k, u, v]) * xi[u:u + 28, v:v + 28] for u in range(3) for v in range(3))
        np.testing.assert_allclose(res.x[i, 0], np.clip(expect, 0, 1), atol=1e-6)
    assert not np.array_equal(class_filters(10, 3, 0.3, 1.0, seed=6), w)


# --- artifacts: budgets after uint8 storage, verify against tampering ----------------------------------------
@pytest.mark.parametrize("attack,params,norm,eps", [
    ("EM", {**TINY_EM, "max_rounds": 1}, "linf", "0.2"),
    ("AR", {}, "l2", "0.5052"),
    ("LSP", {}, "l2", "0.6588"),
    ("OPS", {}, "l0", "1"),
    ("CUDA", {}, "linf", "1"),
])
def test_budgets_hold_after_uint8_storage(tiny, attack, params, norm, eps):
    threat = make_threat(norm, eps)
    res = create_attack(attack, **params).craft(tiny, threat, None, seed=0)
    art = build_artifact(tiny, res.x, threat, attack=attack, attack_params=params, dataset="synthetic", seed=0,
                         storage="uint8", class_deltas=res.class_deltas, extra=res.extra)
    assert art.images.dtype == np.uint8
    report = check_budget(tiny, art.images, art.labels, threat)
    assert report.ok, report.problems
    assert report.norm_stats["max"] <= threat.eps + 1e-6


def _artifact(tmp_path: Path, attack: str, name: str = "art") -> Path:
    out = tmp_path / name
    make_poison(attack, "synthetic", None, out, train_subset=200, seed=3, device="cpu")
    return out


def test_a_tampered_ops_artifact_with_two_changed_pixels_fails_verify(tmp_path):
    art = _artifact(tmp_path, "OPS")
    clean = clean_training_set("synthetic", None, {"size": 200, "seed": 3})
    assert verify_artifact(art, clean).ok
    live = tmp_path / "live"  # control: re-hashing an unchanged artifact keeps it valid
    shutil.copytree(art, live)
    _rehash(live)
    assert verify_artifact(live, clean).ok

    def second_pixel(x: np.ndarray) -> None:
        x[7, :, 0, 0] = 255 - x[7, :, 0, 0]
        x[7, :, 27, 27] = 255 - x[7, :, 27, 27]

    _edit_images(art, second_pixel)
    report = verify_artifact(art, clean)
    assert not report.ok
    assert report.offending["over_budget"] == [7]
    assert any("exceed l0 eps=1" in p for p in report.problems)


def test_a_cuda_artifact_with_one_image_altered_fails_verify(tmp_path):
    art = _artifact(tmp_path, "CUDA")
    clean = clean_training_set("synthetic", None, {"size": 200, "seed": 3})
    assert verify_artifact(art, clean).ok

    def one_level(x: np.ndarray) -> None:
        x[42, 0, 10, 10] = x[42, 0, 10, 10] + 1 if x[42, 0, 10, 10] < 255 else 254

    _edit_images(art, one_level)
    report = verify_artifact(art, clean)
    assert not report.ok and report.offending.get("over_budget") is None
    assert any("not their class filter applied" in p and "[42]" in p for p in report.problems)


def test_a_cuda_manifest_with_another_seed_fails_verify(tmp_path):
    art = _artifact(tmp_path, "CUDA")
    clean = clean_training_set("synthetic", None, {"size": 200, "seed": 3})
    m = json.loads((art / "manifest.json").read_text())
    m["cuda_filters"]["seed"] = 4
    m["payload_sha256"] = payload_hash(m["files"], m)
    (art / "manifest.json").write_text(json.dumps(m))
    assert any("filter seed" in p for p in verify_artifact(load_artifact(art), clean).problems)


def test_build_refuses_an_ops_result_that_is_not_the_recorded_shortcut(tiny):
    res = create_attack("OPS").craft(tiny, L0Ball(1, "1"), None)
    res.extra["ops"]["positions"][0] = [0, 0] if res.extra["ops"]["positions"][0] != [0, 0] else [1, 1]
    with pytest.raises(ValueError, match="one-pixel shortcut"):
        build_artifact(tiny, res.x, L0Ball(1, "1"), attack="OPS", attack_params={}, dataset="synthetic", seed=0,
                       extra=res.extra)


# --- budgets and defaults ---------------------------------------------------------------------------------
def test_default_budgets_follow_the_papers():
    assert attack_budget("EM", "cifar10", (3, 32, 32)) == ("linf", "8/255")
    assert attack_budget("EM", "fashion-mnist", (1, 28, 28)) == ("linf", "0.2")
    assert attack_budget("AR", "cifar10", (3, 32, 32)) == ("l2", "1")
    assert attack_budget("LSP", "cifar10", (3, 32, 32)) == ("l2", "1.304")
    assert attack_budget("OPS", "cifar10", (3, 32, 32)) == ("l0", "1")
    assert attack_budget("P3", "cifar10", (3, 32, 32)) is None
    assert default_attack_params("EM", "cifar10")["arch"] == "resnet18"
    assert default_attack_params("EM", "fashion-mnist")["arch"] == "small-cnn"
    assert default_attack_params("SEP", "fashion-mnist", reference=True)["checkpoints"] == 30
    with pytest.raises(ValueError, match="fixed"):
        resolve_attack_threat("OPS", "fashion-mnist", (1, 28, 28), LinfBall(0.2, "0.2"))
    assert resolve_attack_threat("CUDA", "cifar10", (3, 32, 32), None).describe() == LinfBall(1.0, "1").describe()


# --- the CLI on Fashion-MNIST ---------------------------------------------------------------------------------
FAST = {"EM": ["max_rounds=2", "pgd_steps=3"], "EM-class": ["max_rounds=2", "pgd_steps=3"],
        "REM": ["max_rounds=1", "pgd_steps=2", "adv_steps=1"], "TAP": ["steps=3"],
        "SEP": ["epochs=1", "checkpoints=1", "steps=3"], "AR": [], "LSP": [], "OPS": [], "CUDA": []}


@pytest.mark.parametrize("attack", list(FAST))
def test_poison_and_verify_on_fashion_mnist(attack, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DELUSIVE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / attack
    argv = ["poison", "--attack", attack, "--dataset", "fashion-mnist", "--train-subset", "300", "--device", "cpu",
            "--crafting-epochs", "1", "--out", str(out)]
    for p in FAST[attack]:
        argv += ["--attack-param", p]
    assert main(argv) == 0
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.count("OK ") == 1
    m = json.loads((out / "manifest.json").read_text())
    assert m["attack"] == attack and m["num_examples"] == 300
    assert (m["threat"]["norm"], m["threat"]["eps_text"]) == attack_budget(attack, "fashion-mnist", (1, 28, 28))


# --- presets ------------------------------------------------------------------------------------------------
def test_zoo_preset_crafts_every_attack_in_its_own_budget():
    from delusive.attacks import attack_names
    from delusive.experiments.spec import expand, load_preset

    cells = expand(load_preset("zoo-fmnist"))
    assert {c.attack for c in cells} == set(attack_names())
    assert {c.seed for c in cells} == {0, 1, 2} and {c.defense.label for c in cells} == {"ST", "PGD-AT"}
    budgets = {c.attack: c.config["poison"]["budget"] for c in cells}
    assert budgets["OPS"] == {"norm": "l0", "eps": "1"} and budgets["CUDA"] == {"norm": "linf", "eps": "1"}
    assert budgets["AR"]["norm"] == budgets["LSP"]["norm"] == "l2" and budgets["EM"] == {"norm": "linf", "eps": "0.2"}
    assert all(c.config["poison"]["crafting"] is not None for c in cells if c.attack == "TAP")


def test_apbench_cifar10_preset_smoke_on_fixture_cifar_files(tmp_path):
    from data_fixtures import write_cifar
    from delusive.experiments.runner import run_sweep
    from delusive.experiments.spec import load_preset

    write_cifar(tmp_path, n=8)
    spec = load_preset("apbench-cifar10", [
        f"data_root={tmp_path}", "models=[small-cnn]", "seeds=[0]", "attacks=[clean, EM, AR, OPS, CUDA]",
        "train.epochs=1", "crafting.arch=small-cnn", "crafting.train.epochs=1",
        "attack_params={EM: {arch: small-cnn, max_rounds: 1, pgd_steps: 1, train_steps: 1, batch_size: 16}}",
        "eval={attack: pgd, steps: 1, restarts: 1, robust_subset: 4, val_size: 0}"])
    records = run_sweep(spec, tmp_path / "run")
    assert len(records) == 10 and {r["attack"] for r in records} == {"clean", "EM", "AR", "OPS", "CUDA"}
    budget = {r["attack"]: r["config"]["poison"]["budget"] for r in records}
    assert budget["AR"] == {"norm": "l2", "eps": "1"} and budget["OPS"] == {"norm": "l0", "eps": "1"}
    assert budget["EM"] == {"norm": "linf", "eps": "8/255"}
    at = [r for r in records if r["config"]["defense"]["name"] == "pgd_at"]
    assert at and all(r["config"]["defense"]["params"]["steps"] == 10 for r in at)


# --- L2C: the authors' released generator and the CPU-schedule label -----------------------------------------
def test_l2c_poisons_with_a_generator_in_the_authors_file_format(tmp_path, monkeypatch, capsys):
    from delusive.models import create_model

    monkeypatch.setenv("DELUSIVE_CACHE", str(tmp_path / "cache"))
    g = create_model("l2c-mnist-ae", 10, 1, 28, seed=7)
    with torch.no_grad():  # random BN statistics too, so eval mode is not the identity on them
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    state = {k: v for k, v in g.state_dict().items() if not k.endswith("num_batches_tracked")}  # pre-0.4.1 style
    gen_file = tmp_path / "atkmnist_best.pt"
    torch.save(state, gen_file)  # exactly how DeepConfuse saves: a bare state dict, no description beside it
    out = tmp_path / "art"
    assert main(["poison", "--attack", "L2C", "--generator", str(gen_file), "--dataset", "synthetic",
                 "--train-subset", "50", "--norm", "linf", "--eps", "0.3", "--storage", "float32", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert main(["verify", str(out)]) == 0
    art = load_artifact(out)
    assert art.manifest["generator"]["format"] == "deepconfuse-state-dict"
    assert art.manifest["generator"]["trained"] is False
    clean = clean_training_set("synthetic", None, {"size": 50, "seed": 0})
    g.eval()
    with torch.no_grad():
        x = torch.from_numpy(clean.float_x())
        expect = torch.clamp(x + 0.3 * g(x), 0, 1).numpy()
    np.testing.assert_allclose(art.images, expect, atol=1e-5)


def test_the_authors_generator_loader_refuses_pickled_code_and_other_layouts(tmp_path, capsys):
    from delusive.attacks.l2c import load_authors_generator
    from delusive.models import create_model

    whole = tmp_path / "module.pt"
    torch.save(create_model("l2c-mnist-ae", 10, 1, 28), whole)  # a pickled nn.Module: code would run on load
    with pytest.raises(ValueError, match="refusing to unpickle|weights_only"):
        load_authors_generator(whole)
    other = tmp_path / "unet.pth"
    torch.save(create_model("l2c-unet-small", 10, 1, 28).state_dict(), other)
    with pytest.raises(ValueError, match="keys differ"):
        load_authors_generator(other)
    live = tmp_path / "ae.pth"  # control: the right layout loads
    torch.save(create_model("l2c-mnist-ae", 10, 1, 28).state_dict(), live)
    assert load_authors_generator(live)[1]["arch"] == "l2c-mnist-ae"


def test_reports_label_l2c_by_its_schedule():
    from delusive.attacks.defaults import REFERENCE, attack_label, default_attack_params
    from delusive.experiments.report import with_attack_label

    assert attack_label("L2C", default_attack_params("L2C", "fashion-mnist")) == "L2C (CPU schedule)"
    assert attack_label("L2C", dict(REFERENCE["L2C"])) == "L2C"
    assert attack_label("L2C", {"generator": "g.pt"}) == "L2C (loaded generator)"
    assert attack_label("P3", {}) == "P3"
    rec = {"attack": "L2C", "config": {"poison": {"params": default_attack_params("L2C", "mnist")}}}
    assert with_attack_label(rec)["attack"] == "L2C (CPU schedule)" and rec["attack"] == "L2C"


def _their_unet(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """DeepConfuse's CIFAR-10 U-Net forward pass written out on their state dict (eval mode): the reference the
    loader's renaming must reproduce."""
    def block(name: str, h: torch.Tensor) -> torch.Tensor:
        for j in (0, 3):
            h = F.conv2d(h, sd[f"{name}.{j}.weight"], sd[f"{name}.{j}.bias"], padding=1)
            b = f"{name}.{j + 1}"
            h = F.relu(F.batch_norm(h, sd[f"{b}.running_mean"], sd[f"{b}.running_var"], sd[f"{b}.weight"],
                                    sd[f"{b}.bias"], False))
        return h

    def up(h: torch.Tensor) -> torch.Tensor:
        return F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=True)

    c1 = block("dconv_down1", x)
    c2 = block("dconv_down2", F.avg_pool2d(c1, 2))
    c3 = block("dconv_down3", F.avg_pool2d(c2, 2))
    h = block("dconv_down4", F.avg_pool2d(c3, 2))
    h = block("dconv_up3", torch.cat([up(h), c3], 1))
    h = block("dconv_up2", torch.cat([up(h), c2], 1))
    h = block("dconv_up1", torch.cat([up(h), c1], 1))
    h = F.conv2d(h, sd["conv_last.0.weight"], sd["conv_last.0.bias"])
    h = F.batch_norm(h, sd["conv_last.1.running_mean"], sd["conv_last.1.running_var"], sd["conv_last.1.weight"],
                     sd["conv_last.1.bias"], False)
    return torch.tanh(h)


def test_the_authors_cifar_unet_state_dict_loads_into_the_same_network(tmp_path):
    from delusive.attacks.l2c import UNET_KEYS, load_generator
    from delusive.models import create_model

    ours = create_model("l2c-unet", 10, 3, 32, seed=3)
    back = {v: k for k, v in UNET_KEYS.items()}
    theirs = {}
    gen = torch.Generator().manual_seed(0)
    for k, v in ours.state_dict().items():
        head = next(h for h in back if k.startswith(h + "."))
        t = v.clone()
        if k.endswith("running_var"):
            t = torch.rand(v.shape, generator=gen) + 0.5
        elif k.endswith("running_mean"):
            t = torch.rand(v.shape, generator=gen) - 0.5
        theirs[back[head] + k[len(head):]] = t
    f = tmp_path / "atk.0.032.best.pth"
    torch.save(theirs, f)
    g, meta = load_generator(f)
    assert meta["arch"] == "l2c-unet" and meta["in_channels"] == 3
    x = torch.rand(2, 3, 32, 32, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(g(x), _their_unet(theirs, x), atol=1e-5, rtol=1e-4)


# --- import of released poisons -----------------------------------------------------------------------------
def test_import_of_released_noise_and_images_records_provenance_and_checks_the_budget(tmp_path, capsys):
    clean = clean_training_set("synthetic", None, {"size": 60, "seed": 0})
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.uniform(-8 / 255, 8 / 255, clean.x.shape).astype(np.float32))
    pt = tmp_path / "perturbation.pt"  # Huang et al. release EM noise as one tensor saved with torch.save
    torch.save(noise, pt)
    base = ["import", "--clean-dataset", "synthetic", "--train-subset", "60", "--norm", "linf"]
    assert main([*base, "--eps", "8/255", str(pt), "--attack-name", "EM", "--origin", "HanxunH/Unlearnable-Examples",
                 "--out", str(tmp_path / "em")]) == 0
    m = json.loads((tmp_path / "em" / "manifest.json").read_text())
    import hashlib

    assert m["attack"] == "EM (imported)" and m["import"]["claimed_attack"] == "EM"
    assert m["import"]["source_sha256"] == hashlib.sha256(pt.read_bytes()).hexdigest()
    assert m["import"]["origin"] == "HanxunH/Unlearnable-Examples" and m["import"]["kind"] == "per-sample-noise"
    assert main(["verify", str(tmp_path / "em")]) == 0
    # the same noise claimed at a smaller budget is refused, and nothing is written
    assert main([*base, "--eps", "4/255", str(pt), "--out", str(tmp_path / "small")]) == 1
    assert "exceed linf eps=4/255" in capsys.readouterr().err and not (tmp_path / "small").exists()
    # poisoned images, channels last, with labels (an .npz as other releases ship them)
    imgs = np.clip(clean.x.astype(np.int16) + rng.integers(-2, 3, clean.x.shape), 0, 255).astype(np.uint8)
    npz = tmp_path / "poison.npz"
    np.savez(npz, data=imgs.transpose(0, 2, 3, 1), targets=clean.y)
    assert main([*base, "--eps", "2/255", str(npz), "--out", str(tmp_path / "imgs")]) == 0
    art = load_artifact(tmp_path / "imgs")
    assert np.array_equal(art.images, imgs) and art.manifest["import"]["kind"] == "poisoned-images"
    relabelled = tmp_path / "relabelled.npz"
    np.savez(relabelled, data=imgs, targets=(clean.y + 1) % 10)
    assert main([*base, "--eps", "2/255", str(relabelled), "--out", str(tmp_path / "bad")]) == 1
    assert "labels differ from the clean labels" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkilled_em_crafting_resumes_to_the_same_artifact_bytes(tmp_path):
    """`delusive poison --attack EM` killed with SIGKILL after a round's checkpoint (model and noise) and run again
    writes the same artifact bytes as an uninterrupted run (CPU, fp32)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "delusive", "poison", "--attack", "EM", "--dataset", "synthetic",
            "--train-subset", "200", "--attack-param", "max_rounds=6", "--attack-param", "stop_accuracy=1.0",
            "--attack-param", "pgd_steps=3", "--attack-param", "train_steps=3", "--attack-param", "batch_size=50",
            "--device", "cpu"]
    env = {**os.environ, "DELUSIVE_PROGRESS": "0", "DELUSIVE_CHECKPOINT_EVERY_S": "0", "OMP_NUM_THREADS": "1"}
    ref = subprocess.run([*argv, "--out", str(tmp_path / "ref")], env=env, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*argv, "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state, deadline = out / "craft_state.json", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["round"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    had_checkpoint = state.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert had_checkpoint and not (out / "manifest.json").exists(), "killed too late: nothing to resume"
    again = subprocess.run([*argv, "--out", str(out)], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming crafting from the checkpoint" in again.stderr and "resuming" not in ref.stderr
    for name in ("images.npy", "labels.npy", "manifest.json"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert main(["verify", str(out)]) == 0
