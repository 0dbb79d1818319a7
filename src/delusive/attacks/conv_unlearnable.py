"""Convolution-based unlearnable datasets, registered as attack ``CUDA`` (Sadasivan, Soltanolkotabi and Feizi,
CVPR 2023, "CUDA: Convolution-based Unlearnable Datasets"; official code
vinusankars/Convolution-based-Unlearnability). The module is not named after the GPU platform on purpose.

Every class k owns a random ``kernel_size``×``kernel_size`` filter W_k: entries uniform in [0, ``blur_parameter``]
with one entry, at a uniformly random place, set to ``center_parameter`` (1.0), the same filter on every channel;
every image of class k is replaced by the depthwise convolution W_k * x (zero padding, same size), clipped to
[0, 1]. The change is multiplicative and not norm-bounded, so ℓp adversarial training does not contain it: the
manifest's budget is the whole box (ℓ∞ ε = 1, "any image"), and what ``verify`` checks instead is the
construction itself: it re-derives the class filters from the recorded seed and parameters, applies them to
the clean images and requires the stored images to be exactly what that gives (in the recorded storage mode).
The filters are drawn on the CPU and the convolution runs in float64 on the CPU, so the bytes are the same
on every machine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from delusive import runtime
from delusive.attacks.artifact import quantise_toward_clean, register_verifier
from delusive.attacks.base import ATTACKS, Attack, CraftResult
from delusive.threat import LinfBall, ThreatModel
from delusive.utils.seeding import derive_seed


def class_filters(num_classes: int, kernel_size: int, blur_parameter: float, center_parameter: float,
                  seed: int) -> torch.Tensor:
    """K×k×k float64 filters: U[0, blur] entries and one entry, at a random place, set to ``center_parameter``."""
    g = runtime.generator(derive_seed(seed, "CUDA", "filters"))
    w = runtime.rand((num_classes, kernel_size, kernel_size), g, dtype=torch.float64) * blur_parameter
    where = runtime.randint(0, kernel_size * kernel_size, num_classes, g)
    w.view(num_classes, -1)[runtime.arange(num_classes), where] = center_parameter
    return w


def convolve(x: np.ndarray, labels: np.ndarray, filters: torch.Tensor, chunk: int = 4096) -> np.ndarray:
    """clip(W_{y_i} * x_i, 0, 1) for every image (float64 on the CPU), as float32 N×C×H×W."""
    xf = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    n, c = xf.shape[:2]
    k = filters.shape[-1]
    out = np.empty(xf.shape, dtype=np.float32)
    for cls in range(filters.shape[0]):
        idx = np.flatnonzero(labels == cls)
        weight = filters[cls].reshape(1, 1, k, k).expand(c, 1, k, k).contiguous()
        for s in range(0, len(idx), chunk):
            part = idx[s:s + chunk]
            xb = torch.from_numpy(np.ascontiguousarray(xf[part]))
            yb = F.conv2d(xb, weight, padding=k // 2, groups=c)
            out[part] = torch.clamp(yb, 0.0, 1.0).float().numpy()
    return out


@ATTACKS.register("CUDA")
class ConvUnlearnable(Attack):
    """Class-wise random blurring filters (Sadasivan et al. 2023); needs no model. Defaults: the paper's
    CIFAR-10 values (3×3 filters, blur parameter 0.3, centre 1.0)."""

    name = "CUDA"
    needs_model = False
    classwise = True

    def __init__(self, blur_parameter: float = 0.3, kernel_size: int = 3, center_parameter: float = 1.0) -> None:
        if not (isinstance(blur_parameter, int | float) and math.isfinite(blur_parameter) and blur_parameter >= 0):
            raise ValueError(f"blur_parameter: must be a finite number >= 0, got {blur_parameter!r}")
        if isinstance(kernel_size, bool) or int(kernel_size) != kernel_size or int(kernel_size) < 1 \
                or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size: must be an odd whole number >= 1, got {kernel_size!r}")
        if not (isinstance(center_parameter, int | float) and math.isfinite(center_parameter)):
            raise ValueError(f"center_parameter: must be a finite number, got {center_parameter!r}")
        self.blur_parameter, self.kernel_size = float(blur_parameter), int(kernel_size)
        self.center_parameter = float(center_parameter)

    @staticmethod
    def fixed_threat() -> ThreatModel:
        return LinfBall(1.0, "1")

    def filters(self, num_classes: int, seed: int) -> torch.Tensor:
        return class_filters(num_classes, self.kernel_size, self.blur_parameter, self.center_parameter, seed)

    def craft(self, train, threat, model, seed=0, work_dir=None):  # type: ignore[no-untyped-def]
        w = self.filters(train.num_classes, seed)
        extra = {"cuda_filters": {"seed": int(seed), "kernel_size": self.kernel_size,
                                  "blur_parameter": self.blur_parameter, "center_parameter": self.center_parameter,
                                  "filters": w.tolist()}}
        return CraftResult(convolve(train.x, train.y, w), extra=extra)


def verify_cuda(manifest: dict[str, Any], images: np.ndarray, clean_x: np.ndarray, labels: np.ndarray) -> list[str]:
    """Re-derive the filters from the recorded seed and parameters, apply them, compare with the stored images."""
    rec = manifest.get("cuda_filters")
    try:
        atk = ConvUnlearnable(rec["blur_parameter"], rec["kernel_size"], rec["center_parameter"])
        seed = int(rec["seed"])
    except (TypeError, KeyError, ValueError) as e:
        return [f"CUDA manifest lacks usable filter parameters ({e})"]
    if seed != manifest.get("seed"):
        return [f"CUDA manifest: filter seed {seed} differs from the artifact's seed {manifest.get('seed')}"]
    k = int(manifest.get("num_classes", 0))
    w = atk.filters(k, seed)
    if np.asarray(rec.get("filters"), dtype=np.float64).shape != tuple(w.shape) or \
            not np.allclose(np.asarray(rec["filters"], dtype=np.float64), w.numpy(), rtol=0, atol=1e-12):
        return ["CUDA manifest: the recorded filters are not the ones its seed and parameters give"]
    expected = convolve(clean_x, labels, w)
    if images.dtype == np.uint8:
        if clean_x.dtype != np.uint8:
            return ["CUDA artifact stored as uint8 but the clean set is not uint8"]
        expected_stored: np.ndarray = quantise_toward_clean(clean_x, expected)
        bad = np.flatnonzero((images != expected_stored).reshape(len(images), -1).any(1))
    else:
        bad = np.flatnonzero((np.abs(images - expected) > 1e-6).reshape(len(images), -1).any(1))
    if bad.size:
        return [f"{bad.size} image(s) are not their class filter applied to the clean image, "
                f"e.g. indices {bad[:10].tolist()}"]
    return []


register_verifier("CUDA", verify_cuda)
