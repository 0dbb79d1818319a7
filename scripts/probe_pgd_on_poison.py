"""Does PGD overestimate an adversarially trained model's robustness on the poisoned training images?

Theorem 1's argument, per image: a poisoned image x̂ = x + δ lies within ε of its clean original x, so a model
truly robust at x̂ (in the ε-ball the poison was crafted in) classifies x correctly. An image an attack
reports robust at x̂ while the model misclassifies the clean x is therefore a *certified miss* of that attack:
x itself is an adversarial example it did not find. This counts them for PGD-10 (the per-epoch selection
attack of the sweeps) and for AutoAttack's standard version, on a seeded sample of poisoned training images.
Quoted in docs/results.md §2 (the PGD-AT seed on P3 whose held-out PGD robust accuracy rose while its clean
accuracy fell).

Usage: python scripts/probe_pgd_on_poison.py MODEL_DIR ARTIFACT_DIR [N] [EPS]   (N default 500, EPS 0.2)
"""

import sys
import time

import numpy as np
import torch

import delusive
from delusive import runtime
from delusive.evaluation.attacks import robust_correct
from delusive.perturb import pgd
from delusive.threat import make_threat

EPS = ["0.2"]


def _robust(attack: object, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if attack == "pgd-10":  # the engine's any-iterate criterion (delusive.PGD returns the last iterate)
        return robust_correct(model, x, y, make_threat("linf", EPS[0]), "pgd", steps=10, rel_step_size=0.25,
                              generator=runtime.generator(0))
    adv = attack(x, y)  # type: ignore[operator]
    with torch.no_grad():
        return model(adv).argmax(1) == y


def main() -> None:
    model_dir, artifact_dir = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    eps = sys.argv[4] if len(sys.argv) > 4 else "0.2"
    EPS[0] = eps
    model, meta = delusive.load_model(model_dir)
    model.eval()
    art = delusive.load_artifact(artifact_dir)
    clean = delusive.load_dataset(art.manifest["dataset"], "train")
    idx = np.sort(np.random.default_rng(0).choice(len(art.labels), size=n, replace=False))
    xp = torch.as_tensor(art.images[idx]).float()
    xp = xp / 255.0 if art.images.dtype == np.uint8 else xp
    xc, y = (t[torch.as_tensor(idx)] for t in clean.tensors())
    assert torch.equal(y, torch.as_tensor(art.labels[idx]).long()), "artifact and clean labels disagree"
    gap = float((xp - xc).abs().amax())
    print(f"{model_dir} ({meta.get('arch')}) on {n} poisoned training images of {artifact_dir}: "
          f"max |x̂ - x| = {gap:.4f} (ε {eps})")
    with torch.no_grad():
        clean_ok = model(xc).argmax(1) == y
        poison_ok = model(xp).argmax(1) == y
    print(f"clean originals classified correctly: {100 * float(clean_ok.float().mean()):.1f}%; poisoned images: "
          f"{100 * float(poison_ok.float().mean()):.1f}%")
    with torch.enable_grad():
        last = pgd(model, xp, y, make_threat("linf", eps), steps=10, rel_step_size=0.25, random_start=True,
                   y_true=y, generator=runtime.generator(0)).x_adv
    with torch.no_grad():
        last_ok = model(last).argmax(1) == y
        api_ok = model(delusive.PGD(model, eps=eps, steps=10, rel_step_size=0.25, seed=0)(xp, y)).argmax(1) == y
    print(f"accuracy on PGD-10's last iterates (torchattacks' convention) {100 * float(last_ok.float().mean()):.1f}%; "
          f"on delusive.PGD's images {100 * float(api_ok.float().mean()):.1f}%")
    for name, attack in (("PGD-10, step ε/4, random start", "pgd-10"),
                         ("APGD-CE + APGD-T, 100 steps", delusive.AutoAttack(model, eps=eps, seed=0))):
        t0 = time.perf_counter()
        robust = _robust(attack, model, xp, y)
        misses = robust & ~clean_ok
        print(f"{name:<32} robust at x̂ {100 * float(robust.float().mean()):5.1f}%   certified misses (robust at x̂, "
              f"clean x wrong) {int(misses.sum())} = {100 * float(misses.float().mean()):.1f}%   "
              f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
