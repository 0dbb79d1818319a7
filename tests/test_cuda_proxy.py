"""The CPU-side proxy for CUDA bugs (issue 20): one step of every path — each defense, PGD, APGD, P1-P5, L2C
and the training loop — on the ``meta`` device under :class:`cuda_proxy.DeviceGuard`, so a device mix or a
host synchronisation raises at its line, with the host-to-device copies of each step counted; the dtypes of
the same steps under CPU bf16 autocast; and planted bugs the proxy must catch (the controls)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cuda_proxy import DEVICE, DeviceGuard, DeviceMixError, HostSyncError, device_generators
from delusive import runtime
from delusive.data import make_synthetic
from delusive.defenses import OBJECTIVES, Objective, StepOutput, TrainConfig, create_objective, fit
from delusive.models import create_model
from delusive.perturb import apgd, pgd
from delusive.threat import L2Ball, LinfBall, Masked, half_mask

SHAPE = (3, 8, 8)
N = 6
DEFENSE_PARAMS = {"pgd_at": {"steps": 2}, "trades": {"steps": 2}, "fat": {"steps": 3, "tau": 0},
                  "gairat": {"steps": 2, "begin_fraction": 0.0}, "free_at": {"replays": 2}}


@pytest.fixture
def meta(monkeypatch):
    with device_generators(monkeypatch):
        yield


def _model(arch: str = "small-cnn", device: torch.device = DEVICE) -> torch.nn.Module:
    model = create_model(arch, 4, SHAPE[0], SHAPE[1], seed=0)
    return runtime.prepare_model(model, device)


def _batch(device: torch.device = DEVICE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if device == DEVICE:
        x = runtime.to_channels_last(torch.empty((N, *SHAPE), device=DEVICE))
        return x, torch.empty(N, dtype=torch.long, device=DEVICE), torch.empty(N, dtype=torch.long, device=DEVICE)
    g = runtime.generator(0)
    return (runtime.to_channels_last(runtime.rand((N, *SHAPE), g)), runtime.arange(N) % 4, runtime.arange(N))


def _objective(name: str, threat=None) -> Objective:  # type: ignore[no-untyped-def]
    cls = OBJECTIVES.get(name)
    obj = create_objective(name, None if not cls.needs_threat else "linf",
                           None if not cls.needs_threat else "0.1", **DEFENSE_PARAMS.get(name, {}))
    if threat is not None and obj.threat is not None:
        obj.threat = threat
    obj.begin_epoch(1, 2)  # past the warm-ups (GAIRAT reweights, fast AT's monitor is not due)
    return obj


def _train_step(model: torch.nn.Module, obj: Objective, x, y, idx, gen) -> StepOutput:  # type: ignore[no-untyped-def]
    out = obj.loss(model, x, y, idx, gen)
    out.loss.backward()  # free AT moves its δ inside the backward pass
    return out


# --- every defense: one training step, no sync, no copy ------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OBJECTIVES.names()))
def test_each_defense_step_has_no_host_sync_and_no_copy(meta, name):
    model = _model().train()
    x, y, idx = _batch()
    obj = _objective(name)
    gen = runtime.generator(0, DEVICE)
    with DeviceGuard() as guard:
        for _ in range(2):  # the second step reuses carried state (free AT's δ)
            out = _train_step(model, obj, x, y, idx, gen)
            for v in out.stats.values():
                assert not isinstance(v, torch.Tensor) or v.device == DEVICE
    assert guard.copies == [], guard.copies


def test_masked_threat_step_copies_its_mask_once(meta):
    model = _model().train()
    x, y, idx = _batch()
    threat = Masked(LinfBall(0.1), half_mask(SHAPE, "top"))
    obj = _objective("pgd_at", threat)
    gen = runtime.generator(0, DEVICE)
    with DeviceGuard() as guard:
        for _ in range(3):
            _train_step(model, obj, x, y, idx, gen)
    assert len(guard.copies) == 1, guard.copies  # the mask, once, not once per PGD step


# --- PGD, APGD, evaluation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("threat", [LinfBall(0.1), L2Ball(0.5)], ids=["linf", "l2"])
def test_pgd_minimising_and_maximising_has_no_sync(meta, threat):
    model = _model().eval()
    x, y, _ = _batch()
    with DeviceGuard() as guard:
        pgd(model, x, y, threat, steps=3, random_start=True, generator=runtime.generator(1, DEVICE))
        pgd(model, x, y, threat, steps=3, maximize=False, final_eval=False)  # P1/P2's targeted descent
        pgd(model, x, y, threat, steps=3, early_stop_tau=1, step_noise=0.001, random_start=True,
            generator=runtime.generator(2, DEVICE))  # FAT off the CPU: masked, not compacted
    assert guard.copies == []


def test_apgd_reads_the_device_per_restart_not_per_iteration(meta):
    model = _model().eval()
    x, y, _ = _batch()
    counts = []
    for steps in (3, 9):
        with DeviceGuard(allow_syncs=True) as guard:
            apgd(model, x, y, LinfBall(0.1), steps=steps, loss="ce", generator=runtime.generator(0, DEVICE))
            apgd(model, x, y, LinfBall(0.1), steps=steps, loss="dlr-targeted", n_target_classes=2,
                 generator=runtime.generator(0, DEVICE))
        assert guard.copies == []
        counts.append(len(guard.syncs))
    assert counts[0] == counts[1], counts  # three times the iterations, the same number of reads


# --- P1-P5 and L2C -------------------------------------------------------------------------------------------
def test_universal_step_has_no_sync_and_one_index_copy_per_iteration(meta):
    from delusive.attacks.universal import universal_class_deltas, universal_step

    model = _model().eval()
    x_all = torch.empty((20, *SHAPE), device=DEVICE)
    deltas = torch.zeros((4, *SHAPE), device=DEVICE)
    labels = runtime.arange(4, DEVICE).repeat_interleave(5)
    idx = torch.empty((4, 5), dtype=torch.long, device=DEVICE)
    with DeviceGuard() as guard:
        universal_step(model, x_all, deltas, labels, idx, LinfBall(0.1), 0.02)
    assert guard.copies == []
    copies = []
    for iterations in (2, 4):
        with DeviceGuard(allow_syncs=True) as guard:
            universal_class_deltas(model, x_all, 4, LinfBall(0.1), iterations, 5, 0.2, seed=0)
        copies.append(len(guard.copies))
        assert len(guard.syncs) == 1, guard.syncs  # the final result, read once
    assert copies[1] - copies[0] == 2  # the seeded batch indices (drawn on the CPU for every device), per iteration


def test_p1_reads_one_result_per_batch(meta):
    from delusive.attacks import create_attack

    model = _model().eval()
    syncs = []
    for n in (8, 16):
        data = make_synthetic(n, num_classes=4, shape=SHAPE, seed=0)
        with DeviceGuard(allow_syncs=True) as guard:
            create_attack("P1", steps=3, batch_size=4).craft(data, LinfBall(0.1), model, seed=0)
        syncs.append(len(guard.syncs))
    assert syncs[1] - syncs[0] == 2, syncs  # two more batches, two more reads (their results)


def test_p5_runs_on_the_cpu_by_design():
    from delusive.attacks import create_attack

    data = make_synthetic(8, num_classes=4, shape=SHAPE, seed=0)
    with DeviceGuard() as guard:
        res = create_attack("P5").craft(data, LinfBall(0.1), None, seed=0)
    assert guard.copies == [] and res.x.shape == (8, *SHAPE)


def test_l2c_steps_have_no_sync_and_no_copy(meta):
    from delusive.attacks.l2c import classifier_step, generator_step

    g = runtime.prepare_model(create_model("l2c-unet-small", 4, SHAPE[0], SHAPE[1], seed=0), DEVICE).train()
    f = _model().train()
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    x, y, _ = _batch()
    with DeviceGuard() as guard:
        for _ in range(2):
            a = generator_step(g, opt, f, LinfBall(0.1), x, y, 0.01)
            b = classifier_step(f, x, y, 0.01)
    assert a.device == DEVICE and b.device == DEVICE
    assert guard.copies == []


# --- the training loop ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["standard", "trades", "fat", "gairat"])
def test_loop_reads_the_device_per_interval_not_per_step(meta, name):
    data = make_synthetic(40, num_classes=4, shape=SHAPE, seed=0)
    counts = []
    for batch in (20, 5):  # 2 and 8 steps per epoch
        model = _model()
        with DeviceGuard(allow_syncs=True) as guard:
            fit(model, data, _objective(name), TrainConfig(epochs=1, batch_size=batch, crop_padding=2, hflip=True))
        counts.append((len(guard.syncs), len(guard.copies)))
    assert counts[0] == counts[1], counts  # 4x the steps: the same reads and copies (per epoch, not per step)


# --- dtypes under CPU bf16 autocast --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OBJECTIVES.names()))
def test_defense_step_dtypes_under_bf16_autocast(name):
    cpu = torch.device("cpu")
    model = _model(device=cpu).train()
    x, y, idx = _batch(cpu)
    obj = _objective(name)
    with runtime.autocast("bf16", cpu):
        out = obj.loss(model, x, y, idx, runtime.generator(0))
    assert out.loss.dtype == torch.float32  # losses in fp32
    out.loss.backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())


def test_pgd_and_attack_steps_keep_fp32_inputs_and_budget_under_bf16():
    from delusive.attacks.l2c import generator_delta
    from delusive.attacks.universal import universal_step

    cpu = torch.device("cpu")
    model = _model(device=cpu).eval()
    x, y, _ = _batch(cpu)
    threat = L2Ball(0.5)
    with runtime.autocast("bf16", cpu):
        res = pgd(model, x, y, threat, steps=3, random_start=True, generator=runtime.generator(0))
        adv = apgd(model, x, y, threat, steps=3, generator=runtime.generator(0))
        deltas = universal_step(model, x, runtime.zeros((4, *SHAPE)), runtime.arange(4).repeat_interleave(2),
                                runtime.arange(8).reshape(4, 2) % N, threat, 0.1, "bf16")
        g = create_model("l2c-unet-small", 4, SHAPE[0], SHAPE[1], seed=0)
        d = generator_delta(g, x, threat)
    for t in (res.x_adv, adv.x_adv, deltas, d):
        assert t.dtype == torch.float32
    assert bool(threat.contains(res.x_adv, x, 1e-5).all()) and bool(threat.contains(adv.x_adv, x, 1e-5).all())
    assert float(threat.norm(deltas).max()) <= 0.5 + 1e-5 and float(threat.norm(d).max()) <= 0.5 + 1e-5


# --- controls: planted bugs the proxy must catch -------------------------------------------------------------
class _CPUNoise(Objective):
    """Planted bug: noise drawn on the CPU generator and added to device inputs without moving it."""

    name = "planted-mix"
    needs_threat = False

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        noise = runtime.randn(x.shape, runtime.generator(0))  # (the fix: runtime.randn(x.shape, generator, x.device))
        logits = model(x + 0.01 * noise)
        return StepOutput(F.cross_entropy(logits.float(), y), logits)


class _ReadsLoss(Objective):
    """Planted bug: a per-step statistic read from the device."""

    name = "planted-sync"
    needs_threat = False

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        return StepOutput(loss, logits, {"loss": loss.detach().item()})


class _MovesEachStep(Objective):
    """Planted bug: a CPU constant moved to the device every step."""

    name = "planted-copy"
    needs_threat = False

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        weights = runtime.ones(4).to(x.device)
        logits = model(x)
        return StepOutput(F.cross_entropy(logits.float(), y, weight=weights), logits)


def test_control_planted_device_mix_is_caught_at_its_line(meta):
    model = _model().train()
    x, y, idx = _batch()
    with pytest.raises((DeviceMixError, RuntimeError)) as e, DeviceGuard():
        _train_step(model, _CPUNoise(None), x, y, idx, runtime.generator(0, DEVICE))
    assert "device" in str(e.value)
    if isinstance(e.value, DeviceMixError):
        assert "test_cuda_proxy.py" in str(e.value)


def test_control_planted_host_sync_is_caught_at_its_line(meta):
    model = _model().train()
    x, y, idx = _batch()
    with pytest.raises(HostSyncError, match=r"test_cuda_proxy.py:\d+ \(loss\)"), DeviceGuard():
        _train_step(model, _ReadsLoss(None), x, y, idx, runtime.generator(0, DEVICE))


def test_control_planted_copy_per_step_is_counted(meta):
    model = _model().train()
    x, y, idx = _batch()
    with DeviceGuard() as guard:
        for _ in range(3):
            _train_step(model, _MovesEachStep(None), x, y, idx, runtime.generator(0, DEVICE))
    assert len(guard.copies) == 3 and "test_cuda_proxy.py" in guard.copies[0]


def test_control_a_per_step_sync_in_the_loop_is_seen(meta):
    data = make_synthetic(40, num_classes=4, shape=SHAPE, seed=0)
    counts = []
    for batch in (20, 5):
        with DeviceGuard(allow_syncs=True) as guard:
            fit(_model(), data, _ReadsLoss(None), TrainConfig(epochs=1, batch_size=batch))
        counts.append(len(guard.syncs))
    assert counts[1] - counts[0] == 6  # one read per step: what the loop test above rules out
