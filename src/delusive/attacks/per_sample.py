"""P1 (adversarial) and P2 (hypocritical) perturbations of Section 4: per-sample PGD that *minimises* the
crafting model's loss toward a target: t(y) for P1 (the image is made to look like another class), y for
P2 (the image is made easier). Reference: 100 steps of ε/5, no random start, last iterate, batch 256."""

from __future__ import annotations

import numpy as np
import torch

from delusive import runtime
from delusive.attacks.base import ATTACKS, Attack, CraftResult, target_map
from delusive.attacks.resume import CraftCheckpoint
from delusive.models import model_hash
from delusive.perturb import pgd
from delusive.runtime import eval_mode, to_channels_last
from delusive.utils import config_hash, progress
from delusive.utils.seeding import derive_seed


class _PerSample(Attack):
    def __init__(self, steps: int = 100, rel_step_size: float = 0.2, batch_size: int = 256,
                 random_start: bool = False, target_shift: int = 1) -> None:
        if steps < 1:
            raise ValueError(f"steps: must be >= 1, got {steps}")
        if rel_step_size <= 0:
            raise ValueError(f"rel_step_size: must be > 0, got {rel_step_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        self.steps, self.rel_step_size, self.batch_size = int(steps), float(rel_step_size), int(batch_size)
        self.random_start, self.target_shift = bool(random_start), int(target_shift)
        self.precision = "fp32"  # set on the instance (``--precision``): autocast of the crafting model's passes

    def targets(self, y: torch.Tensor, num_classes: int) -> torch.Tensor:
        raise NotImplementedError

    def crafting_fn(self, model: torch.nn.Module, seed: int, start: int) -> torch.nn.Module:
        """The function PGD descends for the batch starting at ``start`` (P1/P2: the model; TAP: augmented)."""
        return model

    def craft(self, train, threat, model, seed=0, work_dir=None):  # type: ignore[no-untyped-def]
        if model is None:
            raise ValueError(f"attack {self.name}: needs a crafting model")
        dev = runtime.device_of(model)
        x_all, y_all = (t.to(dev) for t in train.tensors())
        n = x_all.shape[0]
        precision = runtime.resolve_precision(self.precision, dev)
        parts: list[object] = [self.name, self.params(), threat.describe(), train.sha256(), model_hash(model), seed]
        ident = config_hash(parts if precision == "fp32" else [*parts, precision])
        ckpt = CraftCheckpoint(work_dir, ident)
        out = np.empty((n, *train.shape), dtype=np.float32)
        done = 0
        restored = ckpt.load()
        if restored is not None:
            arrays, state = restored
            done = int(state["done"])
            out[:done] = arrays["partial"][:done]
        bar = progress(total=n, initial=done, desc=f"craft {self.name}", unit="img")
        with eval_mode(model), runtime.autocast(precision, dev):  # PGD keeps x' and its steps in fp32
            for start in range(done, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                xb, yb = to_channels_last(x_all[start:stop]), y_all[start:stop]
                gen = runtime.generator(derive_seed(seed, self.name, start), dev)
                res = pgd(self.crafting_fn(model, seed, start), xb, self.targets(yb, train.num_classes), threat,
                          steps=self.steps, rel_step_size=self.rel_step_size, maximize=False,
                          random_start=self.random_start, generator=gen, final_eval=False)
                out[start:stop] = res.x_adv.cpu().contiguous().numpy()
                bar.update(stop - start)
                if ckpt.due() and stop < n:
                    ckpt.save({"partial": out[:stop]}, done=stop)
        bar.close()
        # the checkpoint stays until the artifact is written and verified (make_poison clears it): a failure
        # while writing costs a rerun only the batches after the last checkpoint
        return CraftResult(out)


@ATTACKS.register("P1")
class P1(_PerSample):
    """Adversarial perturbations: minimise ℓ(f(x'), t(y)), t(y) = (y + target_shift) mod K."""

    name = "P1"

    def targets(self, y, num_classes):  # type: ignore[no-untyped-def]
        return target_map(y, num_classes, self.target_shift)


@ATTACKS.register("P2")
class P2(_PerSample):
    """Hypocritical perturbations: minimise ℓ(f(x'), y) so the model finds the image even easier."""

    name = "P2"

    def targets(self, y, num_classes):  # type: ignore[no-untyped-def]
        return y
