"""L2C (Feng et al. 2019): the generator stays inside its budget for any input; its artifact verifies and
records the generator; one alternating update raises the classifier's clean loss after its pseudo-update;
crafting resumes after an interruption to the same bytes; seeds decide the result; a saved generator is
reused without training."""

import copy
import math

import numpy as np
import pytest
import torch

from delusive.attacks import build_artifact, create_attack, load_artifact, save_artifact, verify_artifact
from delusive.attacks.defaults import default_attack_params
from delusive.attacks.l2c import (
    GENERATOR_FILE,
    L2C,
    generator_delta,
    generator_step,
    load_generator,
    pseudo_updated_clean_loss,
)
from delusive.attacks.resume import clear_craft_state
from delusive.data import make_synthetic
from delusive.models import classifier_names, create_model, model_hash, model_kind, save_model
from delusive.registry import hyperparameters
from delusive.threat import L2Ball, LinfBall, Masked, half_mask

TINY = {"trials": 2, "classifier_epochs": 1, "batch_size": 16, "classifier_lr": 0.1, "generator_lr": 1e-3,
        "classifier": "small-cnn", "generator_arch": "l2c-unet-small"}
STEPS = 2 * 1 * 2  # trials × classifier epochs × ceil(32 / 16)


class Interrupted(Exception):
    pass


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(32, num_classes=4, shape=(1, 12, 12), seed=0)


def _adversarial_inputs(c: int, s: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, c, s, s, generator=g)
    x[0] *= 1e6
    x[1] = -1e30
    x[2] = torch.rand(c, s, s, generator=g)
    x[3, :, : s // 2] = float("inf")
    x[4, :, :, : s // 2] = float("-inf")
    x[5, :, 0, 0] = float("nan")
    return x


def _craft(ds, threat, out, seed=0, **overrides):
    atk = create_attack("L2C", **{**TINY, **overrides})
    res = atk.craft(ds, threat, None, seed=seed, work_dir=out)
    art = build_artifact(ds, res.x, threat, attack="L2C", attack_params=atk.params(), dataset="synthetic",
                         seed=seed, extra=res.extra)
    save_artifact(art, out)
    return atk, res, art


# --- the generator and its budget ---------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["l2c-unet-small", "l2c-unet"])
@pytest.mark.parametrize("train_mode", [False, True])
def test_generator_output_lies_in_minus_one_one_for_any_input(arch, train_mode):
    g = create_model(arch, 10, 3, 12, seed=0).train(train_mode)
    x = _adversarial_inputs(3, 12)
    with torch.no_grad():
        out, finite = g(x), g(x[:3])  # in train mode BN mixes a batch: one non-finite image touches them all
    for o in (out, finite):
        assert o.shape == (len(o), 3, 12, 12) and torch.isfinite(o).all()
        assert float(o.abs().max()) <= 1.0
    assert float(finite.abs().max()) > 0.9  # control: finite inputs reach the tanh's range (not a constant zero)


@pytest.mark.parametrize("threat", [LinfBall(0.1), L2Ball(0.5), Masked(L2Ball(0.5), half_mask((1, 12, 12)))],
                         ids=repr)
@pytest.mark.parametrize("train_mode", [False, True])
def test_perturbation_is_within_budget_for_any_input(threat, train_mode):
    g = create_model("l2c-unet-small", 4, 1, 12, seed=0).train(train_mode)
    x = torch.cat([_adversarial_inputs(1, 12), torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(3))])
    finite = torch.isfinite(x).flatten(1).all(1)
    with torch.no_grad():
        deltas = [generator_delta(g, x, threat), generator_delta(g, x[finite], threat)]
    for delta in deltas:
        assert torch.isfinite(delta).all()
        assert float(threat.norm(delta).max()) <= threat.eps * (1 + 1e-6)
        if isinstance(threat, Masked):
            assert float((delta * (1 - threat.mask)).abs().max()) == 0.0
    # control: the budget is reached (the tanh saturates / the ℓ2 projection is active), not a constant zero
    assert float(threat.norm(deltas[1]).max()) >= 0.99 * threat.eps


def test_reference_generator_has_the_authors_size():
    """DeepConfuse's CIFAR-10 U-Net, counted from its layer list: double conv blocks 3→64→128→256→512, up
    blocks (512+256)→256, (256+128)→128, (128+64)→64, 1×1 conv head + BN (conv biases kept)."""
    def dc(a, b):
        return (9 * a * b + b) + 2 * b + (9 * b * b + b) + 2 * b

    expected = (dc(3, 64) + dc(64, 128) + dc(128, 256) + dc(256, 512) + dc(768, 256) + dc(384, 128)
                + dc(192, 64) + (64 * 3 + 3) + 2 * 3)
    g = create_model("l2c-unet", 10, 3, 32, seed=0)
    assert sum(p.numel() for p in g.parameters()) == expected == 7_788_681
    assert model_kind("l2c-unet") == model_kind("l2c-unet-small") == "generator"
    assert "l2c-unet" not in classifier_names() and "l2c-unet-small" not in classifier_names()


# --- one alternating update -----------------------------------------------------------------------------
def test_one_generator_update_raises_the_clean_loss_after_the_pseudo_update(tiny):
    threat = LinfBall(0.2)
    x, y = tiny.tensors()
    x, y = x[:24], y[:24]
    f = create_model("small-cnn", 4, 1, 12, seed=1).train()
    g = create_model("l2c-unet-small", 4, 1, 12, seed=2).train()
    g_down = copy.deepcopy(g)
    before = float(pseudo_updated_clean_loss(f, g, threat, x, y, lr=0.5))
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    returned = generator_step(g, opt, f, threat, x, y, lr=0.5)
    after = float(pseudo_updated_clean_loss(f, g, threat, x, y, lr=0.5))
    assert returned == pytest.approx(before, rel=1e-6)
    assert after > before + 1e-5
    # control: the same-size step *against* the gradient lowers that loss
    loss = pseudo_updated_clean_loss(f, g_down, threat, x, y, lr=0.5)
    grads = torch.autograd.grad(loss, list(g_down.parameters()))
    with torch.no_grad():
        for p, gr in zip(g_down.parameters(), grads, strict=True):
            p.sub_(1e-3 * gr.sign())
    assert float(pseudo_updated_clean_loss(f, g_down, threat, x, y, lr=0.5)) < before - 1e-5
    # the classifier itself is untouched by the generator's update (it takes its own step separately)
    assert model_hash(f) == model_hash(create_model("small-cnn", 4, 1, 12, seed=1))


def test_the_generator_gradient_flows_through_the_pseudo_update_only(tiny):
    """The clean loss depends on g only through θ' (the unrolled step): with lr = 0 it does not depend on g."""
    threat = LinfBall(0.2)
    x, y = tiny.tensors()
    f = create_model("small-cnn", 4, 1, 12, seed=1).train()
    g = create_model("l2c-unet-small", 4, 1, 12, seed=2).train()
    for lr, nonzero in ((0.0, False), (0.5, True)):
        loss = pseudo_updated_clean_loss(f, g, threat, x[:16], y[:16], lr=lr)
        grads = torch.autograd.grad(loss, list(g.parameters()), allow_unused=True, materialize_grads=True)
        total = sum(float(gr.abs().sum()) for gr in grads)
        assert (total > 0) == nonzero, (lr, total)


# --- the artifact -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["uint8", "float32"])
@pytest.mark.parametrize("threat", [LinfBall(0.1), L2Ball(0.5)], ids=repr)
def test_an_untrained_generators_artifact_verifies_and_records_the_generator(tiny, tmp_path, threat, storage):
    g = create_model("l2c-unet-small", 4, 1, 12, seed=5)
    save_model(g, tmp_path / "g.pt", {"arch": "l2c-unet-small", "num_classes": 4, "in_channels": 1,
                                      "image_size": [12, 12]})
    atk = create_attack("L2C", **{**TINY, "generator": str(tmp_path / "g.pt")})
    res = atk.craft(tiny, threat, None, seed=0, work_dir=tmp_path / "art")
    art = build_artifact(tiny, res.x, threat, attack="L2C", attack_params=atk.params(), dataset="synthetic",
                         seed=0, storage=storage, extra=res.extra)
    save_artifact(art, tmp_path / "art")
    report = verify_artifact(tmp_path / "art", tiny)
    assert report.ok, report.problems
    assert report.norm_stats["max"] > 0.3 * threat.eps  # control: the images were perturbed
    rec = load_artifact(tmp_path / "art").manifest["generator"]
    assert rec["sha256"] == model_hash(g) and rec["trained"] is False and rec["arch"] == "l2c-unet-small"
    assert rec["file"] == GENERATOR_FILE and rec["source"] == str(tmp_path / "g.pt")
    saved, _ = load_generator(tmp_path / "art")  # the directory or the file
    assert model_hash(saved) == model_hash(g)
    assert res.timing["train_generator_s"] == 0.0 and res.timing["generate_s"] > 0


def test_generator_path_must_hold_a_generator_for_these_images(tiny, tmp_path):
    f = create_model("small-cnn", 4, 1, 12, seed=0)
    save_model(f, tmp_path / "f.pt", {"arch": "small-cnn", "num_classes": 4, "in_channels": 1, "image_size": 12})
    atk = create_attack("L2C", **{**TINY, "generator": str(tmp_path / "f.pt")})
    with pytest.raises(ValueError, match="holds a classifier .'small-cnn'., not an L2C generator"):
        atk.craft(tiny, LinfBall(0.1), None)
    g = create_model("l2c-unet-small", 4, 3, 12, seed=0)
    save_model(g, tmp_path / "g3.pt", {"arch": "l2c-unet-small", "num_classes": 4, "in_channels": 3,
                                       "image_size": 12})
    atk = create_attack("L2C", **{**TINY, "generator": str(tmp_path / "g3.pt")})
    with pytest.raises(ValueError, match="built for 3-channel images, the training set has 1"):
        atk.craft(tiny, LinfBall(0.1), None)
    with pytest.raises(ValueError, match="classifier: 'l2c-unet' is a generator"):
        create_attack("L2C", classifier="l2c-unet")
    with pytest.raises(ValueError, match="generator_arch: 'small-cnn' is a classifier"):
        create_attack("L2C", generator_arch="small-cnn")
    with pytest.raises(ValueError, match="classifier: model: unknown name 'vgg13'"):
        create_attack("L2C", classifier="vgg13")
    with pytest.raises(ValueError, match="trials: must be >= 1"):
        create_attack("L2C", trials=0)


# --- determinism, resume, reuse -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_run(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("l2c-ref")
    seen = []
    atk = create_attack("L2C", **TINY)
    atk.on_step = seen.append
    res = atk.craft(tiny, LinfBall(0.2), None, seed=0, work_dir=out)
    # the trained generator's checkpoint outlives crafting: only make_poison, with the artifact verified on
    # disk, removes it (a full disk at images.npy must not lose the training)
    assert __import__("json").loads((out / "craft_state.json").read_text())["step"] == STEPS
    art = build_artifact(tiny, res.x, LinfBall(0.2), attack="L2C", attack_params=atk.params(),
                         dataset="synthetic", seed=0, extra=res.extra)
    save_artifact(art, out)
    clear_craft_state(out)
    return out, res, seen


def _files(d):
    return {f: (d / f).read_bytes() for f in ("images.npy", "labels.npy", "manifest.json", GENERATOR_FILE,
                                               "generator.json")}


def test_training_runs_the_configured_steps_and_records_them(reference_run, tiny):
    out, res, seen = reference_run
    assert seen == list(range(1, STEPS + 1))
    rec = load_artifact(out).manifest["generator"]
    assert rec["trained"] is True and rec["train_config"] == {k: v for k, v in TINY.items()}
    assert rec["sha256"] == model_hash(res.generator) != model_hash(create_model("l2c-unet-small", 4, 1, 12))
    assert rec["train_data_sha256"] == tiny.sha256() and rec["last_trial"]["trial"] == 1
    assert math.isfinite(rec["last_trial"]["clean_loss_after_pseudo_update"])
    assert res.timing["train_generator_s"] > 0 and res.timing["generate_s"] > 0
    assert "train_generator_s" not in (out / "manifest.json").read_text()  # timings stay out of the manifest
    assert not list(out.glob("craft_*"))  # the crafting checkpoint is gone once the artifact is complete
    assert verify_artifact(out, tiny).ok


def test_same_seed_same_bytes_and_another_seed_differs(reference_run, tiny, tmp_path):
    out, _, _ = reference_run
    _craft(tiny, LinfBall(0.2), tmp_path / "again", seed=0)
    _craft(tiny, LinfBall(0.2), tmp_path / "other", seed=1)
    ref, again, other = _files(out), _files(tmp_path / "again"), _files(tmp_path / "other")
    assert again == ref
    assert other["images.npy"] != ref["images.npy"] and other[GENERATOR_FILE] != ref[GENERATOR_FILE]
    assert other["labels.npy"] == ref["labels.npy"]  # labels never change


@pytest.mark.parametrize("stop_after", [1, 2])  # mid-trial, and exactly at the end of the first trial
def test_interrupted_crafting_resumes_to_identical_generator_and_bytes(reference_run, tiny, tmp_path, stop_after):
    out, ref_res, _ = reference_run
    d = tmp_path / "art"

    def stop(done):
        if done == stop_after:
            raise Interrupted

    atk = create_attack("L2C", **TINY)
    atk.checkpoint_every_s, atk.on_step = 0.0, stop
    with pytest.raises(Interrupted):
        atk.craft(tiny, LinfBall(0.2), None, seed=0, work_dir=d)
    state = __import__("json").loads((d / "craft_state.json").read_text())
    assert state["step"] == stop_after
    # a kill while the *next* checkpoint was being written leaves the other slot half-written: harmless
    other = 1 - state["slot"]
    for a in ("f", "i"):
        np.save(d / f"craft_l2c{other}_{a}.npy", np.zeros(3, dtype=np.float32 if a == "f" else np.int64))
    seen = []
    atk = create_attack("L2C", **TINY)
    atk.on_step = seen.append
    res = atk.craft(tiny, LinfBall(0.2), None, seed=0, work_dir=d)
    assert seen == list(range(stop_after + 1, STEPS + 1))  # it resumed, it did not start over
    assert model_hash(res.generator) == model_hash(ref_res.generator)
    art = build_artifact(tiny, res.x, LinfBall(0.2), attack="L2C", attack_params=atk.params(), dataset="synthetic",
                         seed=0, extra=res.extra)
    save_artifact(art, d)
    assert _files(d) == _files(out)
    clear_craft_state(d)  # what make_poison does once the artifact verifies, older slots included
    assert not list(d.glob("craft_*"))


def test_a_checkpoint_of_another_run_is_ignored(reference_run, tiny, tmp_path):
    """A different seed in the same directory starts afresh rather than resuming the other run's state."""
    d = tmp_path / "art"
    atk = create_attack("L2C", **TINY)
    atk.checkpoint_every_s = 0.0

    def stop(done):
        if done == 2:
            raise Interrupted

    atk.on_step = stop
    with pytest.raises(Interrupted):
        atk.craft(tiny, LinfBall(0.2), None, seed=1, work_dir=d)
    seen = []
    atk = create_attack("L2C", **TINY)
    atk.on_step = seen.append
    res = atk.craft(tiny, LinfBall(0.2), None, seed=0, work_dir=d)
    assert seen[0] == 1 and model_hash(res.generator) == model_hash(reference_run[1].generator)


def test_a_saved_generator_is_reused_without_training(reference_run, tiny, tmp_path):
    out, ref_res, _ = reference_run
    atk = create_attack("L2C", **{**TINY, "trials": 99, "generator": str(out / GENERATOR_FILE)})
    seen = []
    atk.on_step = seen.append
    res = atk.craft(tiny, LinfBall(0.2), None, seed=0, work_dir=tmp_path / "reuse")
    assert seen == []  # no training step ran
    assert np.array_equal(res.x, ref_res.x)
    assert res.extra["generator"]["sha256"] == model_hash(ref_res.generator)
    assert res.extra["generator"]["train_config"] == TINY and res.extra["generator"]["trained"] is False
    assert model_hash(load_generator(tmp_path / "reuse")[0]) == model_hash(ref_res.generator)
    # control: the same generator under a smaller budget perturbs less
    small = create_attack("L2C", **{**TINY, "generator": str(out / GENERATOR_FILE)}).craft(
        tiny, LinfBall(0.05), None, seed=0)
    x = torch.from_numpy(tiny.float_x())
    assert float((torch.from_numpy(small.x) - x).abs().max()) <= 0.05 + 1e-6
    assert not np.array_equal(small.x, ref_res.x)


# --- defaults ---------------------------------------------------------------------------------------------
def test_defaults_are_the_reference_on_cifar_and_cpu_sized_on_28px():
    ref = default_attack_params("L2C", "cifar10")
    assert ref == {k: v for k, v in hyperparameters(L2C).items() if k != "generator"}
    assert ref["classifier"] == "vgg11" and ref["generator_arch"] == "l2c-unet"
    assert (ref["batch_size"], ref["classifier_lr"], ref["generator_lr"]) == (256, 0.01, 1e-4)
    cpu = default_attack_params("L2C", "fashion-mnist")
    assert cpu["generator_arch"] == "l2c-unet-small" and cpu["classifier"] == "small-cnn"
    assert default_attack_params("L2C", "fashion-mnist", reference=True) == ref
    create_attack("L2C", **cpu)  # valid parameters


def test_sigkilled_l2c_crafting_resumes_to_the_same_artifact_bytes(tmp_path):
    """The issue's bar: `delusive poison --attack L2C` killed with SIGKILL mid-training and run again writes the
    same artifact bytes as an uninterrupted run (CPU, fp32); the kill must land after a checkpoint."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "delusive", "poison", "--attack", "L2C", "--dataset", "synthetic",
            "--train-subset", "256", "--attack-param", "trials=3", "--attack-param", "classifier_epochs=2",
            "--attack-param", "batch_size=32", "--attack-param", "classifier=small-cnn",
            "--attack-param", "generator_arch=l2c-unet-small", "--device", "cpu"]
    env = {**os.environ, "DELUSIVE_PROGRESS": "0", "DELUSIVE_CHECKPOINT_EVERY_S": "0", "OMP_NUM_THREADS": "1"}
    ref = subprocess.run([*argv, "--out", str(tmp_path / "ref")], env=env, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*argv, "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state, deadline = out / "craft_state.json", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["step"] >= 10:
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
    assert "resuming crafting from the checkpoint" in again.stderr  # it resumed, not restarted from scratch
    assert "resuming" not in ref.stderr  # control: the uninterrupted run had nothing to resume
    for name in ("images.npy", "labels.npy", "generator.pt"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert run_verify(out) == 0


def run_verify(path):
    from delusive.cli.main import main

    return main(["verify", str(path)])
