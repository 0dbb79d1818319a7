"""Your own nn.Module and DataLoader, end to end from Python: craft P1 against your classifier, adversarially
train a fresh model on the poison in a hand-written loop, and evaluate it with AutoAttack.

    python examples/own_model_and_loader.py [--images 2000] [--epochs 5]
"""

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import delusive


class Net(nn.Module):
    """Any classifier from [0, 1] images to logits."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(32 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def toy_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)  # the same class patterns for train and test
    patterns = torch.rand(4, 1, 16, 16, generator=g)
    g.manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    return (patterns[y] + 0.2 * torch.randn(n, 1, 16, 16, generator=g)).clamp(0, 1), y


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--eval-images", type=int, default=500)
    args = p.parse_args()
    torch.manual_seed(0)
    x, y = toy_data(args.images, seed=1)
    test = toy_data(args.eval_images, seed=2)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    eps = 8 / 255

    # 1. a clean classifier of your own, trained by the package's loop straight from your DataLoader
    victim = Net()
    delusive.fit(victim, loader, epochs=args.epochs, lr=0.05)
    # 2. P1 against it: every image moved within linf 8/255 toward the next class; labels unchanged
    x_poison = delusive.craft("P1", (x, y), model=victim, eps=eps, steps=10)
    assert (x_poison - x).abs().max() <= eps + 1e-6
    poison_loader = DataLoader(TensorDataset(x_poison, y), batch_size=64, shuffle=True)

    # 3. adversarial training on the poison, in a loop you write yourself
    model = Net()
    at_loss = delusive.AdversarialLoss("pgd_at", eps=eps, steps=5, rel_step_size=0.25)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for epoch in range(args.epochs):
        at_loss.set_epoch(epoch, args.epochs)
        model.train()
        for xb, yb in poison_loader:
            loss = at_loss(model, xb, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()

    # 4. AutoAttack on clean test data: accuracy and the adversarial images
    result = delusive.evaluate(model, test, attack="autoattack", eps=eps, n=args.eval_images)
    print(f"adversarially trained on P1: {result}")
    print(f"adversarial images: {tuple(result.adversarial.shape)}")


if __name__ == "__main__":
    main()
