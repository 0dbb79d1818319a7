"""Self-ensemble protection, SEP (Chen, Wang, Zhang, Qi, Shi, Lin and Liu, ICLR 2023, "Self-Ensemble
Protection: Training Checkpoints Are Good Data Protectors"; official code Sizhe-Chen/SEP).

One model is trained on the clean data and ``checkpoints`` snapshots of that single run (evenly spaced over
its ``epochs``) form an ensemble; every image then gets an adversarial perturbation against the whole ensemble,
found by the one PGD engine on the members' *mean* cross-entropy (the average of their gradients, as in the
authors' ens.py). By default it is targeted like theirs: lower CE(·, t(y)) with t(y) = (y + ``target_shift``)
mod K, shift 5; ``targeted=False`` raises CE(·, y) instead. The authors' CIFAR-10 run: 30 checkpoints of a
120-epoch ResNet-18 run, 30 signed steps of 1/255 from the clean image. Their full method adds feature alignment
and variance reduction (SEP-FA-VR, 15 checkpoints); this is the core (docs/attacks.md), and the CPU default
uses a few checkpoints of a short run.

Crafting is resumable: the training run checkpoints at epoch ends (model, momentum, snapshots taken so far),
the PGD phase after batches (snapshots and the finished images).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from delusive import runtime
from delusive.attacks.base import ATTACKS, Attack, CraftResult, target_map
from delusive.attacks.resume import CraftCheckpoint
from delusive.attacks.surrogate import Surrogate, batch_order, check_classifier, pack_tensors, unpack_tensors
from delusive.perturb import pgd
from delusive.utils import config_hash, progress
from delusive.utils.seeding import derive_seed


class CheckpointEnsemble(nn.Module):
    """The members' logits side by side (N × M·K): :func:`mean_member_ce` averages their cross-entropies, so the
    engine's gradient is the average of the members' gradients, as the authors average theirs."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x).float() for m in self.members], dim=1)


def mean_member_ce(num_members: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-sample mean over the M members of CE(member logits, labels), from :class:`CheckpointEnsemble`'s output.
    (Were the engine to track misclassification on this output, as it does when maximising, the argmax over M·K
    columns would be meaningless; SEP uses only the iterate, one restart and no final evaluation.)"""

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = logits.reshape(logits.shape[0], num_members, -1)
        return torch.stack([F.cross_entropy(z[:, j], labels, reduction="none") for j in range(num_members)]).mean(0)

    return loss


def snapshot_epochs(epochs: int, checkpoints: int) -> list[int]:
    """The epochs (1-based) after which a snapshot is kept: evenly spaced, the last epoch always among them."""
    return sorted({max(1, round(epochs * (j + 1) / checkpoints)) for j in range(checkpoints)})


@ATTACKS.register("SEP")
class SEP(Attack):
    """Adversarial perturbations against the checkpoints of one training run (Chen et al. 2023)."""

    name = "SEP"
    needs_model = False

    def __init__(self, arch: str = "resnet18", epochs: int = 120, checkpoints: int = 30, steps: int = 30,
                 rel_step_size: float = 0.125, batch_size: int = 256, lr: float = 0.1, targeted: bool = True,
                 target_shift: int = 5) -> None:
        self.arch = check_classifier(arch, "arch")
        for key, value in (("epochs", epochs), ("checkpoints", checkpoints), ("steps", steps),
                           ("batch_size", batch_size)):
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"{key}: must be a whole number >= 1, got {value!r}")
        if int(checkpoints) > int(epochs):
            raise ValueError(f"checkpoints: at most one per epoch ({epochs}), got {checkpoints}")
        for key, value in (("rel_step_size", rel_step_size), ("lr", lr)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{key}: must be a finite number > 0, got {value!r}")
        self.epochs, self.checkpoints, self.steps = int(epochs), int(checkpoints), int(steps)
        self.rel_step_size, self.batch_size, self.lr = float(rel_step_size), int(batch_size), float(lr)
        self.targeted, self.target_shift = bool(targeted), int(target_shift)
        self.device: str | torch.device = "cpu"
        self.checkpoint_every_s: float | None = None
        self.ensemble: CheckpointEnsemble | None = None

    def craft(self, train, threat, model, seed=0, work_dir=None):  # type: ignore[no-untyped-def]
        device = runtime.device_of(model) if model is not None else runtime.resolve_device(self.device)
        x_cpu, y_cpu = train.tensors()
        x, y = x_cpu.to(device), y_cpu.to(device)
        n, k = x.shape[0], train.num_classes
        if self.targeted and self.target_shift % k == 0:
            raise ValueError(f"target_shift: {self.target_shift} maps every class to itself with {k} classes")
        bsz = min(self.batch_size, n)
        per_epoch = -(-n // bsz)
        keep = snapshot_epochs(self.epochs, self.checkpoints)
        sur = Surrogate(self.arch, k, train.shape, derive_seed(seed, "SEP", "model"), device, lr=self.lr)
        size = len(list(sur.model.state_dict().values()))
        snaps: list[list[torch.Tensor]] = []
        ident = config_hash(["SEP", self.params(), threat.describe(), train.sha256(), seed])
        ckpt = CraftCheckpoint(work_dir, ident, every_s=self.checkpoint_every_s)
        epoch, done = 0, 0
        out = np.empty((n, *train.shape), dtype=np.float32)

        def snapshot_tensors() -> list[torch.Tensor]:
            return [t.detach().clone() for t in sur.model.state_dict().values()]

        restored = ckpt.load()
        if restored is not None:
            arrays, state = restored
            epoch, done = int(state["epoch"]), int(state["done"])
            sur.unpack(arrays["model_f"], arrays["model_i"])
            for j in range(int(state["snapshots"])):
                ts = snapshot_tensors()
                unpack_tensors(ts, arrays[f"snap{j}_f"], arrays[f"snap{j}_i"], "SEP checkpoint")
                snaps.append(ts)
            if done:
                out[:done] = arrays["partial"][:done]

        def save() -> None:
            fl, it = sur.pack()
            arrays = {"model_f": fl, "model_i": it}
            for j, ts in enumerate(snaps):
                arrays[f"snap{j}_f"], arrays[f"snap{j}_i"] = pack_tensors(ts)
            if done:
                arrays["partial"] = out[:done]
            ckpt.save(arrays, epoch=epoch, done=done, snapshots=len(snaps))

        bar = progress(total=self.epochs, initial=epoch, desc="SEP training run", unit="epoch")
        while epoch < self.epochs:
            for b in range(per_epoch):
                idx = batch_order(n, bsz, lambda e: derive_seed(seed, "SEP", "order", e), device, epoch * per_epoch + b)
                sur.step(x[idx], y[idx])
            epoch += 1
            if epoch in keep:
                snaps.append(snapshot_tensors())
            bar.update(1)
            if ckpt.due():
                save()
        bar.close()
        assert len(snaps) == len(keep) and all(len(s) == size for s in snaps)
        members = []
        for ts in snaps:
            member = _copy_with(sur.model, ts)
            members.append(member.eval())
        ens = CheckpointEnsemble(members).eval()
        self.ensemble = ens  # kept after crafting (tests measure it)
        loss = mean_member_ce(len(members))
        bar = progress(total=n, initial=done, desc="craft SEP", unit="img")
        with runtime.frozen_parameters(ens):
            for s in range(done, n, bsz):
                xb, yb = x[s:s + bsz], y[s:s + bsz]
                labels = target_map(yb, k, self.target_shift) if self.targeted else yb
                res = pgd(ens, runtime.to_channels_last(xb), labels, threat, steps=self.steps,
                          rel_step_size=self.rel_step_size, loss=loss, maximize=not self.targeted,
                          final_eval=False)
                out[s:s + len(xb)] = res.x_adv.cpu().contiguous().numpy()
                done = s + len(xb)
                bar.update(len(xb))
                if done < n and ckpt.due():
                    save()
        bar.close()
        ckpt.clear()
        return CraftResult(out, extra={"crafting": {"snapshot_epochs": keep}})


def _copy_with(model: nn.Module, tensors: list[torch.Tensor]) -> nn.Module:
    """A copy of ``model`` holding the state ``tensors`` (in state-dict order)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for t, v in zip(m.state_dict().values(), tensors, strict=True):
            t.copy_(v)
    return m
