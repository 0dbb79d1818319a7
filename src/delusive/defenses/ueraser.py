"""``ueraser`` / ``ueraser_lite``: UEraser (Qin et al. 2023, "Learning the Unlearnable: Adversarial
Augmentations Suppress Unlearnable Example Attacks"). Heavy random augmentation — plasma-fractal brightness
and contrast noise, channel shuffle, one TrivialAugment operation — breaks the pixel-exact shortcut a poison
plants; taking the *largest* loss over K augmented copies of each example ("adversarial augmentation")
trains on the copy where the shortcut helps least.

Pure torch: the reference builds the policy from kornia (``RandomPlasmaBrightness``, ``RandomPlasmaContrast``,
``RandomChannelShuffle``, ``auto.TrivialAugment``); kornia ≥ 0.8 needs torch ≥ 2.5 and a native
``kornia-rs`` wheel, so the operations are re-implemented here, batched on the training device and drawn
from the loop's seeded generator (same seed ⇒ same augmentations, resumable). They follow the reference's
operations and probabilities, not its exact pixel output (see docs/defenses.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from delusive import runtime
from delusive.defenses.checks import _check, _is_int, _is_number
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.threat import ThreatModel

Gen = torch.Generator


def _u(shape: tuple[int, ...], lo: float, hi: float, gen: Gen, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * runtime.rand(shape, gen, device)


def plasma(n: int, h: int, w: int, roughness: torch.Tensor, gen: Gen, device: torch.device) -> torch.Tensor:
    """N×1×H×W fractal noise in [0, 1]: octaves of uniform noise on 2×2, 4×4, ... grids, bilinearly
    upsampled, octave k weighted roughness^k (rougher ⇒ more fine detail), then min-max scaled per image —
    the character of the diamond-square plasma kornia uses, without its exact recursion."""
    acc = runtime.zeros((n, 1, h, w), device)
    octaves = max(1, math.ceil(math.log2(max(h, w))))
    for k in range(octaves):
        s = 2 ** (k + 1)
        noise = _u((n, 1, s, s), -1.0, 1.0, gen, device)
        acc = acc + roughness.view(n, 1, 1, 1) ** k * F.interpolate(noise, size=(h, w), mode="bilinear",
                                                                     align_corners=False)
    lo = acc.amin(dim=(2, 3), keepdim=True)
    hi = acc.amax(dim=(2, 3), keepdim=True)
    return (acc - lo) / (hi - lo).clamp_min(1e-12)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


#: TrivialAugment's operations ("wide" ranges of Müller and Hutter 2021); one is drawn per image
TA_OPS = ("identity", "auto_contrast", "brightness", "color", "contrast", "sharpness", "posterize", "solarize",
          "rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def trivial_augment(x: torch.Tensor, gen: Gen) -> torch.Tensor:
    """One TrivialAugment operation per image at a uniformly drawn strength: geometric ones (rotate ±135°,
    shear ±0.99, translate up to a third of the image — TA-wide's full-image shift would leave it empty)
    through one batched affine resampling (zero fill), colour ones (factors in [0.01, 1.99], posterize 2-8
    bits, solarize threshold in [0, 1]) by blending; equalize is not implemented."""
    n, c, h, w = x.shape
    dev = x.device
    op = runtime.randint(0, len(TA_OPS), n, gen, dev)
    m = runtime.rand(n, gen, dev)  # strength in [0, 1)
    sign = torch.where(runtime.rand(n, gen, dev) < 0.5, -1.0, 1.0)
    is_op = {name: op == i for i, name in enumerate(TA_OPS)}
    # geometric: one affine per image (identity for the others)
    ang = torch.where(is_op["rotate"], sign * m * math.radians(135.0), runtime.zeros(n, dev))
    shx = torch.where(is_op["shear_x"], sign * m * 0.99, runtime.zeros(n, dev))
    shy = torch.where(is_op["shear_y"], sign * m * 0.99, runtime.zeros(n, dev))
    tx = torch.where(is_op["translate_x"], sign * m * 2.0 / 3.0, runtime.zeros(n, dev))
    ty = torch.where(is_op["translate_y"], sign * m * 2.0 / 3.0, runtime.zeros(n, dev))
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([cos, -sin + shx, tx], 1),
                         torch.stack([sin + shy, cos, ty], 1)], 1)
    geo = is_op["rotate"] | is_op["shear_x"] | is_op["shear_y"] | is_op["translate_x"] | is_op["translate_y"]
    # resampled for every batch (asking whether any image drew a geometric op would read the device)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    x = _where(geo, F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False), x)
    # colour
    f = (0.01 + 1.98 * m).view(-1, 1, 1, 1)
    g = _grey(x)
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    x = _where(is_op["auto_contrast"], (x - lo) / (hi - lo).clamp_min(1e-6), x)
    x = _where(is_op["brightness"], x * f, x)
    x = _where(is_op["color"], g + f * (x - g), x)
    x = _where(is_op["contrast"], g.mean(dim=(2, 3), keepdim=True) + f * (x - g.mean(dim=(2, 3), keepdim=True)), x)
    kernel = runtime.as_tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], dev) / 13.0
    blur = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(c, 1, 3, 3), groups=c)
    x = _where(is_op["sharpness"], blur + f * (x - blur), x)
    bits = (2 + torch.floor(m * 7)).clamp(2, 8).view(-1, 1, 1, 1)
    step = 2.0 ** (8 - bits)
    x = _where(is_op["posterize"], torch.floor(x.clamp(0, 1) * 255 / step) * step / 255, x)
    x = _where(is_op["solarize"], torch.where(x >= m.view(-1, 1, 1, 1), 1 - x, x), x)
    return x.clamp(0.0, 1.0)


def random_erasing(x: torch.Tensor, p: float, gen: Gen) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020): with probability p, zero a rectangle of 2-33% of the image with
    aspect ratio log-uniform in [0.3, 3.3] at a uniform position."""
    n, _, h, w = x.shape
    dev = x.device
    on = runtime.rand(n, gen, dev) < p
    area = _u((n,), 0.02, 0.33, gen, dev) * h * w
    ratio = torch.exp(_u((n,), math.log(0.3), math.log(3.3), gen, dev))
    eh = torch.sqrt(area * ratio).round().clamp(1, h)
    ew = torch.sqrt(area / ratio).round().clamp(1, w)
    y0 = torch.floor(runtime.rand(n, gen, dev) * (h - eh + 1))
    x0 = torch.floor(runtime.rand(n, gen, dev) * (w - ew + 1))
    rows = runtime.arange(h, dev).view(1, h, 1)
    cols = runtime.arange(w, dev).view(1, 1, w)
    inside = ((rows >= y0.view(n, 1, 1)) & (rows < (y0 + eh).view(n, 1, 1)) & (cols >= x0.view(n, 1, 1))
              & (cols < (x0 + ew).view(n, 1, 1)) & on.view(n, 1, 1))
    return x * (~inside).unsqueeze(1).to(x.dtype)


def ueraser_augment(x: torch.Tensor, gen: Gen, erase_p: float = 0.0) -> torch.Tensor:
    """The UEraser policy on a batch in [0, 1]: plasma brightness (p 0.5, roughness U(0.3, 0.7), intensity
    U(0.5, 1)), plasma contrast (p 0.5, roughness U(0.3, 0.7)), channel shuffle (p 0.5), one TrivialAugment
    operation, then (only if ``erase_p`` > 0, not in the reference) random erasing."""
    n, c, h, w = x.shape
    dev = x.device
    on = runtime.rand(n, gen, dev) < 0.5
    pl = plasma(n, h, w, _u((n,), 0.3, 0.7, gen, dev), gen, dev)
    intensity = _u((n,), 0.5, 1.0, gen, dev).view(n, 1, 1, 1)
    x = _where(on, (x + intensity * (pl - 0.5)).clamp(0, 1), x)
    on = runtime.rand(n, gen, dev) < 0.5
    pl = plasma(n, h, w, _u((n,), 0.3, 0.7, gen, dev), gen, dev)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = _where(on, (mean + 2.0 * pl * (x - mean)).clamp(0, 1), x)
    on = runtime.rand(n, gen, dev) < 0.5
    perm = torch.argsort(runtime.rand((n, c), gen, dev), dim=1)
    shuffled = torch.gather(x, 1, perm.view(n, c, 1, 1).expand(n, c, h, w))
    x = _where(on, shuffled, x)
    x = trivial_augment(x, gen)
    if erase_p > 0:
        x = random_erasing(x, erase_p, gen)
    return x


@OBJECTIVES.register("ueraser")
class UEraser(Objective):
    """UEraser: each batch is augmented ``copies`` = K times (:func:`ueraser_augment`, independent draws) and
    the loss is the batch mean of the per-example MAXIMUM cross-entropy over the K copies — for the first
    ``repeat_fraction`` of training; after it, one copy (plain CE on one augmentation).

    Defaults are UEraser-Max (K = 5 throughout, the reference's ``repeat_epoch`` = all 300 epochs; the paper
    also trains Max longer than other defenses); ``repeat_fraction=1/6`` is the paper's plain "UEraser" (50 of
    300 epochs) and ``ueraser_lite`` (K = 1) UEraser-Lite. Cost: K forward/backward passes per batch. The
    logits returned (train accuracy) are the last copy's."""

    name = "ueraser"
    needs_threat = False

    def __init__(self, threat: ThreatModel | None = None, copies: int = 5, repeat_fraction: float = 1.0,
                 erase_p: float = 0.0) -> None:
        super().__init__(threat)
        _check(self.name, _is_int(copies) and copies >= 1, "copies", "an integer >= 1", copies)
        _check(self.name, _is_number(repeat_fraction) and 0 <= repeat_fraction <= 1, "repeat_fraction",
               "a fraction in [0, 1]", repeat_fraction)
        _check(self.name, _is_number(erase_p) and 0 <= erase_p <= 1, "erase_p", "a probability in [0, 1]", erase_p)
        self.copies, self.repeat_fraction, self.erase_p = int(copies), float(repeat_fraction), float(erase_p)

    def copies_now(self) -> int:
        """K in the current epoch: ``copies`` while epoch/epochs < ``repeat_fraction``, else 1."""
        return self.copies if self.epoch < self.repeat_fraction * self.epochs else 1

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return ueraser_augment(x, generator, self.erase_p)

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        per_copy = []
        logits = None
        for _ in range(self.copies_now()):
            logits = model(self.augment(x, generator))
            per_copy.append(F.cross_entropy(logits.float(), y, reduction="none"))
        assert logits is not None
        worst = torch.stack(per_copy).amax(0)
        return StepOutput(worst.mean(), logits)


@OBJECTIVES.register("ueraser_lite")
class UEraserLite(UEraser):
    """UEraser-Lite: the UEraser augmentations with one copy (no loss maximisation), the fast variant."""

    name = "ueraser_lite"

    def __init__(self, threat: ThreatModel | None = None, copies: int = 1, repeat_fraction: float = 1.0,
                 erase_p: float = 0.0) -> None:
        super().__init__(threat, copies, repeat_fraction, erase_p)
