"""The one train-and-evaluate pipeline: ``delusive train``, every sweep cell and every crafting model run it.

Steps: hold out a seeded validation split of the (possibly poisoned) training set, build the model on the
chosen device, train with the objective (resuming from ``out``), evaluate each epoch lightly, select an epoch
on the validation split, evaluate the selected model on clean test data with the final attack, and write
``model.safetensors`` (+ ``model.json``), ``history.json`` and ``metrics.json``.

Model selection follows the reference: the defender only has the training set, so the epoch is chosen on a
held-out part of it — on validation *robust* accuracy (PGD) for adversarial-training defenses, on natural
accuracy for standard training (``select: auto``); ``last`` keeps the final epoch. The headline numbers
(``natural_accuracy``, ``robust_accuracy``) are the selected epoch's; ``last_natural_accuracy`` is the final
epoch's. Per-epoch evaluation is light: natural accuracy every epoch, robust accuracy (``epoch_attack``, a
cheap PGD) on a seeded class-stratified test subset every ``epoch_every`` epochs and at the last; the final
robust accuracy uses ``attack`` (``apgd``, AutoAttack's APGD-CE + APGD-T, by default; ``autoattack`` adds
FAB-T and Square), always in fp32, and records its ``eval_spec``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from delusive import runtime
from delusive.data import ArrayDataset
from delusive.defenses import Objective, TrainConfig, apply_transforms, fit
from delusive.defenses.recipe import first_selectable_epoch, plateau_reason, resolve_recipe
from delusive.evaluation import evaluate, natural_accuracy, predict, robust_predictions, stratified_subset
from delusive.evaluation.attacks import ATTACK_NAMES
from delusive.models import create_model, load_checkpoint, save_checkpoint, save_model
from delusive.threat import ThreatModel, make_threat
from delusive.utils import atomic_write_json, read_json
from delusive.utils.safefile import UnsafeFileError

SELECTIONS = ("auto", "val_natural", "val_robust", "last")
BEST = "best.pt"


@dataclass(frozen=True)
class EvalPlan:
    """How a trained model is evaluated and selected (the ``eval`` section of a spec; CLI ``--eval-*``)."""

    norm: str | None = None
    eps: str | None = None
    attack: str = "apgd"  # APGD-CE + APGD-T; "autoattack" adds FAB-T and Square (costly on CPU)
    steps: int | None = None  # None: the attack's default (PGD 20, APGD and FAB 100)
    rel_step_size: float | None = None  # PGD only; None: 2.5/steps, the reference's 2.5ε/K
    restarts: int = 1
    robust_subset: int | None = 1000
    val_size: int = 1000
    select: str = "auto"
    epoch_attack: str = "pgd"
    epoch_steps: int = 10
    epoch_every: int = 5
    epoch_subset: int = 500
    splits: tuple[str, ...] = ()  # further clean splits to report natural accuracy on (e.g. test-randomized)
    probe: bool = False  # linear-probe accuracy of the learned features (rotation SSL, Section 5.2)
    queries: int | None = None  # Square's queries (None: 5000); left out of to_dict when None (older run ids)

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", tuple(self.splits))
        checks = [
            (self.attack in ATTACK_NAMES, "attack", f"one of {', '.join(ATTACK_NAMES)}"),
            (self.epoch_attack in ATTACK_NAMES, "epoch_attack", f"one of {', '.join(ATTACK_NAMES)}"),
            (self.steps is None or (isinstance(self.steps, int) and self.steps >= 1), "steps", "an integer >= 1"),
            (self.rel_step_size is None or self.rel_step_size > 0, "rel_step_size", "a number > 0"),
            (isinstance(self.restarts, int) and self.restarts >= 1, "restarts", "an integer >= 1"),
            (self.robust_subset is None or (isinstance(self.robust_subset, int) and self.robust_subset >= 1),
             "robust_subset", "an integer >= 1 or null (all)"),
            (isinstance(self.val_size, int) and self.val_size >= 0, "val_size", "an integer >= 0"),
            (self.select in SELECTIONS, "select", f"one of {', '.join(SELECTIONS)}"),
            (isinstance(self.epoch_steps, int) and self.epoch_steps >= 1, "epoch_steps", "an integer >= 1"),
            (isinstance(self.epoch_every, int) and self.epoch_every >= 1, "epoch_every", "an integer >= 1"),
            (isinstance(self.epoch_subset, int) and self.epoch_subset >= 1, "epoch_subset", "an integer >= 1"),
            (all(isinstance(x, str) and x for x in self.splits), "splits", "a list of split names"),
            (isinstance(self.probe, bool), "probe", "true or false"),
            (self.queries is None or (isinstance(self.queries, int) and self.queries >= 1), "queries",
             "an integer >= 1 or null (5000)"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise ValueError(f"eval.{name}: must be {allowed}, got {getattr(self, name)!r}")
        if (self.norm is None) != (self.eps is None):
            raise ValueError("eval: give both norm and eps, or neither")

    def threat(self) -> ThreatModel | None:
        return None if self.norm is None else make_threat(self.norm, self.eps)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["queries"] is None:
            del d["queries"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalPlan:
        return cls(**d)


@dataclass(frozen=True)
class RunOptions:
    """Where and how to run; none of it is part of a run's identity (recorded in its result instead).

    ``deterministic``: the exact CUDA switches (:func:`delusive.runtime.set_deterministic`); off, cuDNN
    autotunes and TF32 is allowed. ``checkpoint_every`` / ``checkpoint_minutes``: how often the training loop
    writes its resumable checkpoint (every N epochs, or once that many minutes have passed; always at the end)."""

    device: str = "auto"
    compile: bool = False
    deterministic: bool = False
    checkpoint_every: int = 1
    checkpoint_minutes: float | None = None


def split_validation(train: ArrayDataset, size: int, seed: int) -> tuple[ArrayDataset, ArrayDataset | None]:
    """Hold out ``size`` seeded training images (un-augmented) for choosing the best epoch: the defender
    has only the possibly poisoned training set, never the clean test set, to select on. At most a tenth of
    the set is held out (the reference holds out 1,000 of 50,000), so small training sets stay trainable."""
    size = min(int(size), len(train) // 10)
    if size <= 0:
        return train, None
    perm = np.random.default_rng([seed, 7]).permutation(len(train))
    return train.subset(np.sort(perm[size:])), train.subset(np.sort(perm[:size]))


def selection_metric(plan: EvalPlan, objective: Objective, has_val: bool) -> str | None:
    """The history column the epoch is selected on, or None for the last epoch. ``auto``: robust validation
    accuracy for adversarial training (``Objective.at_recipe``), natural accuracy for everything else — random
    noise in the ε-ball (RandNoise) included, which trains for no robustness and is compared with standard
    training (before, it was selected on robust accuracy and Table 2's RandNoise row kept early epochs)."""
    if not has_val or plan.select == "last":
        return None
    if plan.select == "auto":
        robust = bool(getattr(objective, "at_recipe", False)) and objective.threat is not None \
            and plan.norm is not None
        return "val_robust_accuracy" if robust else "val_natural_accuracy"
    if plan.select == "val_robust" and plan.norm is None:
        raise ValueError("eval.select val_robust needs an evaluation threat (eval norm/eps)")
    return f"{plan.select}_accuracy"


def train_and_evaluate(
    arch: str,
    train: ArrayDataset,
    test: ArrayDataset | None,
    objective: Objective,
    cfg: TrainConfig,
    plan: EvalPlan,
    out: str | Path,
    run: RunOptions = RunOptions(),
    desc: str = "train",
    model_meta: dict[str, Any] | None = None,
    extra_tests: dict[str, ArrayDataset] | None = None,
    probe_data: tuple[ArrayDataset, ArrayDataset] | None = None,
) -> dict[str, Any]:
    """Train ``arch`` on ``train`` with ``objective`` into ``out`` and evaluate it on ``test``; return the
    metrics record (also written to ``out/metrics.json``). Resumes from ``out`` when it holds a checkpoint.

    ``extra_tests`` (split name → clean data) adds natural accuracy on further splits (``split_accuracy``);
    ``probe_data`` (train, test) adds the linear-probe accuracy of the selected model's features."""
    out = Path(out)
    t0 = time.perf_counter()
    runtime.init_distributed(run.device)  # under torchrun: one process per device, DDP inside the loop
    device = runtime.resolve_device(run.device)
    runtime.set_deterministic(device, run.deterministic)
    precision = runtime.resolve_precision(cfg.precision, device)
    cfg = replace(cfg, precision=precision) if precision != cfg.precision else cfg
    cfg = resolve_recipe(cfg, objective)
    threat = plan.threat()
    t_transform = time.perf_counter()  # the defense's training-set transforms (jpeg...): once, before the split
    train = apply_transforms(objective, train, cfg.seed)
    transform_time = time.perf_counter() - t_transform
    fit_set, val = split_validation(train, plan.val_size, cfg.seed)
    select_on = selection_metric(plan, objective, val is not None)
    c, h, w = train.shape
    size: int | tuple[int, int] = h if h == w else (h, w)
    model = runtime.prepare_model(create_model(arch, train.num_classes, c, size, seed=cfg.seed), device)
    trained = runtime.maybe_compile(model, run.compile)

    test_x = test_y = None
    epoch_idx: np.ndarray | None = None
    if test is not None:
        test_x, test_y = (t.to(device) for t in test.tensors())
        epoch_idx = stratified_subset(test_y, plan.epoch_subset, cfg.seed)
        epoch_x, epoch_y = (t[runtime.as_tensor(epoch_idx, device)] for t in (test_x, test_y))  # copied once
    val_x = val_y = None
    if val is not None:
        val_x, val_y = (t.to(device) for t in val.tensors())
    # the defender selects on the robustness it trained for: an adversarial-training objective's own budget
    # (the attacker's, the evaluation threat, is not the defender's to know); other objectives on the plan's
    select_threat = objective.threat if getattr(objective, "at_recipe", False) and objective.threat is not None \
        else threat
    first_selectable = first_selectable_epoch(cfg)
    best_path = out / BEST
    best: dict[str, Any] = _read_best(best_path) or {}  # epoch and score of the best epoch so far (resumable)

    def per_epoch(m: nn.Module, epoch: int) -> dict[str, float]:
        row: dict[str, float] = {}
        if test is not None and test_x is not None and test_y is not None and epoch_idx is not None:
            row["test_natural_accuracy"] = _accuracy_on_device(m, test_x, test_y, precision)
            if threat is not None and (epoch % plan.epoch_every == 0 or epoch == cfg.epochs):
                ok = robust_predictions(m, epoch_x, epoch_y, threat, plan.epoch_steps, None, 1,
                                        seed=cfg.seed, precision=precision, attack=plan.epoch_attack,
                                        desc="epoch robust eval")
                row["test_robust_accuracy"] = float(ok.float().mean())
        if val is not None and val_x is not None and val_y is not None:
            row["val_natural_accuracy"] = _accuracy_on_device(m, val_x, val_y, precision)
            if select_on == "val_robust_accuracy" and select_threat is not None:
                ok = robust_predictions(m, val_x, val_y, select_threat, plan.epoch_steps, None, 1, seed=cfg.seed,
                                        precision=precision, attack="pgd", desc="val robust eval")
                row["val_robust_accuracy"] = float(ok.float().mean())
        if select_on is not None and epoch >= first_selectable:
            score = row[select_on]
            if not best or score > best["score"] or epoch == best["epoch"]:  # ties keep the earlier epoch
                best.update(epoch=epoch, score=score)
                if runtime.is_main():  # under DDP every rank holds the same weights; rank 0 writes
                    save_checkpoint(best_path, {"epoch": epoch, "model": runtime.to_cpu(model.state_dict())})
                    atomic_write_json(best_path.with_suffix(".json"), best)
        return row

    result = fit(trained, fit_set, objective, cfg, checkpoint_dir=out, eval_fn=per_epoch, desc=desc,
                 checkpoint_every=run.checkpoint_every, checkpoint_minutes=run.checkpoint_minutes)
    hist = result.history
    selected_epoch = hist[-1]["epoch"] if hist else cfg.epochs
    runtime.barrier()  # rank 0 has written best.pt before any rank reads it
    if select_on is not None and best_path.exists():
        state = load_checkpoint(best_path)
        model.load_state_dict(state["model"])
        selected_epoch = int(state["epoch"])
    model.eval()
    metrics: dict[str, Any] = {}
    if test is not None:
        metrics = evaluate(model, test, threat, steps=plan.steps, rel_step_size=plan.rel_step_size,
                           restarts=plan.restarts, robust_limit=plan.robust_subset, seed=cfg.seed,
                           precision=precision, attack=plan.attack, queries=plan.queries)
    if extra_tests:
        metrics["split_accuracy"] = {name: natural_accuracy(model, ds, precision=precision)
                                     for name, ds in extra_tests.items()}
    if probe_data is not None:
        from delusive.evaluation.probe import linear_probe

        probe = linear_probe(model, probe_data[0], probe_data[1])
        metrics["probe_accuracy"] = probe["test_accuracy"]
        metrics["probe"] = {k: v for k, v in probe.items() if k != "test_accuracy"}
    last = hist[-1] if hist else {}
    metrics.update(collapse_summary(hist, selected_epoch, cfg.epochs))
    metrics["recipe"] = {"eps_ramp": cfg.eps_ramp, "lr_warmup": cfg.lr_warmup}
    metrics.update({
        "selected_epoch": selected_epoch, "selection": select_on or "last", "epochs": cfg.epochs,
        "selection_from_epoch": first_selectable if select_on is not None else cfg.epochs,
        "selection_threat": None if select_on != "val_robust_accuracy" or select_threat is None
        else f"{select_threat.norm_name} {select_threat.eps_text}",
        "last_natural_accuracy": last.get("test_natural_accuracy"),
        "last_robust_accuracy": last.get("test_robust_accuracy"),
        "val_size": 0 if val is None else len(val), "train_size": len(fit_set),
        # training time excludes the per-epoch evaluation, so defenses compare on what they cost
        "train_time_s": sum(float(r["epoch_time_s"]) for r in hist),
        "train_eval_time_s": result.wall_time_s, "wall_time_s": time.perf_counter() - t0,
        "transform_time_s": transform_time,
        "device": runtime.describe_device(device), "precision": precision, "compiled": run.compile,
        "deterministic": run.deterministic,
    })
    spec = {"arch": arch, "num_classes": train.num_classes, "in_channels": c,
            "image_size": size if isinstance(size, int) else list(size),
            "class_names": list(train.classes or (str(k) for k in range(train.num_classes)))}
    if runtime.is_main():
        save_model(model, out / "model.safetensors", spec, {**(model_meta or {}), "selected_epoch": selected_epoch})
        atomic_write_json(out / "history.json", hist)
        atomic_write_json(out / "metrics.json", metrics)
    metrics["history"] = hist
    metrics["model"] = model
    return metrics


def collapse_summary(history: list[dict[str, Any]], selected_epoch: int, epochs: int | None = None) -> dict[str, Any]:
    """Whether the reported model is a collapsed (constant) predictor: ``collapsed`` when the loop's monitor
    flagged the selected epoch, or when the run sat on the plateau for most of its epochs after the first
    (``plateau_reason``: its model never trained properly even if the last epoch left the 2% band);
    ``collapse_reason`` says which; ``collapse_epoch`` the first epoch the monitor flagged (``None`` if none),
    ``collapsed_epochs`` every flagged epoch (a run can leave the plateau later)."""
    flagged = [int(r["epoch"]) for r in history if r.get("collapsed")]
    chosen = [r for r in history if int(r.get("epoch", -1)) == selected_epoch]
    reason = "the selected epoch was flagged" if chosen and chosen[0].get("collapsed") else None
    if reason is None:
        reason = plateau_reason(flagged, len(history) if epochs is None else epochs)
    out: dict[str, Any] = {"collapsed": reason is not None, "collapse_epoch": flagged[0] if flagged else None,
                           "collapsed_epochs": flagged}
    if reason is not None:
        out["collapse_reason"] = reason
    return out


def _accuracy_on_device(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> float:
    """Natural accuracy of data already on the model's device (the per-epoch evaluation keeps the test and
    validation splits there, rather than copying them again every epoch)."""
    return float((predict(model, x, 1000, precision) == y).float().mean())


def _read_best(path: Path) -> dict[str, Any] | None:
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        return None
    try:
        d = read_json(meta)  # a FIFO or /dev/zero in its place is refused by name (UnsafeFileError), not read
        return {"epoch": int(d["epoch"]), "score": float(d["score"])}
    except UnsafeFileError:
        raise
    except (ValueError, KeyError, TypeError):
        return None
