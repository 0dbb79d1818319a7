"""Adversarial examples torchattacks-style: build an attack on a model, call it on ``(images, labels)``, get
adversarial images back. The model is put in eval mode for the attack and left in the mode it was in; images
stay on their device and in [0, 1]; the random start is on by default, as the field expects."""

from __future__ import annotations

import torch
from torch import nn

from delusive import runtime
from delusive.perturb import apgd, pgd
from delusive.threat import ThreatModel, make_threat


class _Attack:
    """Shared by every attack object: the threat model, the seeded generator, eval-mode handling."""

    def __init__(self, model: nn.Module, eps: float | str, norm: str = "linf", seed: int = 0) -> None:
        self.model = model
        self.threat: ThreatModel = make_threat(norm, eps)
        self.seed = int(seed)
        self._gen: torch.Generator | None = None

    def _generator(self) -> torch.Generator:
        if self._gen is None:  # created lazily on the model's device, seeded once: calls draw fresh starts
            self._gen = runtime.generator(self.seed, runtime.device_of(self.model))
        return self._gen

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dev = runtime.device_of(self.model)
        x, y = images.detach().to(dev), labels.to(dev)
        with runtime.eval_mode(self.model), torch.enable_grad():  # also when called under torch.no_grad()
            adv = self._run(x, y)
        return adv.detach().to(images.device, images.dtype)

    def _run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threat!r})"


class PGD(_Attack):
    """Untargeted PGD (Madry et al. 2018): ``steps`` steps of ``rel_step_size``·ε (default 2.5ε/steps, the
    robust-evaluation convention) from a random start; ``restarts`` keeps, per image, a run that fools the
    model. An image some iterate misclassifies gets that iterate, not the last one (torchattacks returns the
    last, which a fixed step can bring back to the right class), and an image the model already misclassifies
    is returned as it is: accuracy on the returned images is the robust accuracy ``delusive.evaluate`` reports
    (correct on the clean image and at every iterate). ``attack = PGD(model, eps=8/255); x_adv =
    attack(x, y)``."""

    def __init__(self, model: nn.Module, eps: float | str = 8 / 255, norm: str = "linf", steps: int = 10,
                 rel_step_size: float | None = None, random_start: bool = True, restarts: int = 1,
                 seed: int = 0) -> None:
        super().__init__(model, eps, norm, seed)
        self.steps, self.random_start, self.restarts = int(steps), bool(random_start), int(restarts)
        self.rel_step_size = 2.5 / max(self.steps, 1) if rel_step_size is None else float(rel_step_size)

    def _run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        adv = pgd(self.model, x, y, self.threat, steps=self.steps, rel_step_size=self.rel_step_size,
                  random_start=self.random_start, restarts=self.restarts, y_true=y,
                  generator=self._generator(), keep="fooled").x_adv
        with torch.no_grad():
            wrong = self.model(x).argmax(1) != y
        # an image already misclassified is its own adversarial example (AutoAttack's convention): PGD's random
        # start can land where the model is right again
        return torch.where(wrong.view(-1, *([1] * (x.dim() - 1))), x, adv)


class APGD(_Attack):
    """APGD (Croce and Hein 2020) with loss ``ce`` (APGD-CE), ``dlr`` or ``dlr-targeted`` (APGD-T); step sizes
    are set by the algorithm itself."""

    def __init__(self, model: nn.Module, eps: float | str = 8 / 255, norm: str = "linf", steps: int = 100,
                 loss: str = "ce", restarts: int = 1, n_target_classes: int = 9, seed: int = 0) -> None:
        super().__init__(model, eps, norm, seed)
        self.steps, self.loss, self.restarts, self.n_target_classes = int(steps), loss, int(restarts), n_target_classes

    def _run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return apgd(self.model, x, y, self.threat, steps=self.steps, loss=self.loss, restarts=self.restarts,
                    n_target_classes=self.n_target_classes, generator=self._generator()).x_adv


class AutoAttack(_Attack):
    """AutoAttack's cascade (Croce and Hein 2020): each component attacks only the images every earlier one
    failed on, and an image keeps the first adversarial example found. The images come from the APGD
    components (APGD-CE, then APGD-T on the survivors; 2- and 3-class problems use APGD-CE alone, since the
    targeted DLR loss needs four logits). :func:`delusive.evaluate` with ``attack="autoattack"`` also runs the
    package's full AutoAttack evaluation and counts an image robust only if it survives both."""

    def __init__(self, model: nn.Module, eps: float | str = 8 / 255, norm: str = "linf", steps: int = 100,
                 restarts: int = 1, n_target_classes: int = 9, seed: int = 0) -> None:
        super().__init__(model, eps, norm, seed)
        self.steps, self.restarts, self.n_target_classes = int(steps), int(restarts), n_target_classes

    def _run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        adv = x.clone()
        with torch.no_grad():
            logits = self.model(x)
        alive = logits.argmax(1) == y
        losses = ("ce", "dlr-targeted") if logits.shape[1] >= 4 else ("ce",)
        for loss in losses:
            idx = alive.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            res = apgd(self.model, x[idx], y[idx], self.threat, steps=self.steps, loss=loss, restarts=self.restarts,
                       n_target_classes=self.n_target_classes, generator=self._generator())
            adv[idx] = res.x_adv
            alive[idx] = ~res.misclassified
        return adv
