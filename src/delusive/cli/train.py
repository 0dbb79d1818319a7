"""``delusive train``: fit a model with standard training or a defense; write model, config and metrics."""

from __future__ import annotations

import argparse
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import delusive
from delusive import runtime
from delusive.attacks import load_artifact, verify_artifact
from delusive.cli.common import (
    UsageError,
    add_checkpoint_args,
    add_data_args,
    add_device_args,
    add_test_fraction,
    check_budget,
    fraction_text,
    holdout_of,
    nonneg_int,
    parse_params,
    positive_float,
    positive_int,
    resolve_budget,
    seed_int,
)
from delusive.data import dataset_info
from delusive.defenses import (
    CHECKPOINT,
    SCHEDULES,
    TrainConfig,
    check_transforms,
    create_defense,
    defense_names,
    split_defense,
)
from delusive.defenses.recipe import DEFAULT_EPS_RAMP, DEFAULT_LR_WARMUP, resolve_recipe
from delusive.evaluation.attacks import ATTACK_NAMES
from delusive.evaluation.fit import check_eval_attack
from delusive.evaluation.spec import describe_eval_spec
from delusive.experiments.pipeline import SELECTIONS, EvalPlan, RunOptions, train_and_evaluate
from delusive.experiments.poisoning import clean_training_set, seeded_subset, split_pair
from delusive.models import DEFAULT_MODEL, classifier_names
from delusive.threat import NORMS, covers, make_threat
from delusive.utils import atomic_write_json, config_hash


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (standard training or a defense) and evaluate it",
                       description="Train on a clean dataset or on a poison artifact (--poison) with standard "
                       "training or a defense, then evaluate natural and robust accuracy on the clean test set.")
    add_data_args(p)
    p.add_argument("--poison", default=None, metavar="DIR",
                   help="train on this poison artifact (delusive poison) instead of the clean training split")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=classifier_names())
    p.add_argument("--defense", default="standard", type=defense_text, metavar="NAME",
                   help="training objective or training-set transform, or transforms then an objective joined "
                   f"by '+' (e.g. jpeg+pgd_at; docs/defenses.md); one of {', '.join(defense_names())} "
                   "(default: standard)")
    p.add_argument("--norm", choices=NORMS, default=None,
                   help="the defense's threat model (independent of any poison's); default per dataset")
    p.add_argument("--eps", type=fraction_text("--eps"), default=None,
                   help="the defense's budget, e.g. 0.1 or 8/255; default per dataset")
    p.add_argument("--steps", type=nonneg_int("--steps"), default=None, help="PGD steps of the defense")
    p.add_argument("--rel-step-size", type=positive_float("--rel-step-size"), default=None,
                   help="defense PGD step as a fraction of eps (default 0.2 = eps/5)")
    p.add_argument("--defense-param", action="append", metavar="KEY=VALUE",
                   help="extra defense hyperparameter (repeatable), e.g. beta=6")
    add_train_args(p)
    add_eval_args(p, attack_option="--eval-attack")
    p.add_argument("--val-size", type=nonneg_int("--val-size"), default=EvalPlan.val_size,
                   help="training images held out to select the epoch (0: keep the last epoch)")
    p.add_argument("--select", choices=SELECTIONS, default="auto",
                   help="epoch selection on the held-out split: auto (robust accuracy for AT defenses, natural "
                   "for standard training), val_natural, val_robust or last")
    p.add_argument("--eval-every", type=positive_int("--eval-every"), default=EvalPlan.epoch_every,
                   help="robust test accuracy (cheap PGD-10 on a seeded subset) every N epochs and at the last")
    add_test_fraction(p, "train on the rest")
    p.add_argument("--log", choices=("none", "tensorboard"), default="none",
                   help="also log the run for TensorBoard in OUT/tensorboard (needs the tensorboard extra)")
    add_device_args(p, compile_flag=True, deterministic=True)
    add_checkpoint_args(p)
    p.add_argument("--out", required=True, help="output directory (resumes if it holds a checkpoint of this run)")
    p.set_defaults(func=run)


def defense_text(text: str) -> str:
    """An argparse type for ``--defense``: a name of :func:`delusive.defenses.split_defense`'s grammar."""
    try:
        split_defense(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} ({str(e).removeprefix('defense: ')})") from None
    return text


def add_train_args(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--epochs", type=positive_int("--epochs"), default=d.epochs)
    p.add_argument("--batch-size", type=positive_int("--batch-size"), default=d.batch_size)
    p.add_argument("--lr", type=positive_float("--lr"), default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--train-subset", type=positive_int("--train-subset"), default=None,
                   help="train on a seeded random subset of this many examples")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--crop-padding", type=nonneg_int("--crop-padding"), default=None,
                   help="random-crop padding (default per dataset: 4 for CIFAR-10/SVHN, 0 for 28×28 sets)")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default per dataset: off for digits and Fashion-MNIST)")
    p.add_argument("--eps-ramp", type=_train_fraction("--eps-ramp"), default=None, metavar="FRACTION",
                   help=f"adversarial training: grow eps linearly from 0 over this fraction of training, per "
                   f"iteration (default {DEFAULT_EPS_RAMP} for AT defenses; 0 = the reference: full eps from the "
                   "start)")
    p.add_argument("--lr-warmup", type=_train_fraction("--lr-warmup"), default=None, metavar="FRACTION",
                   help=f"linear learning-rate warm-up over this fraction of training (default {DEFAULT_LR_WARMUP} "
                   "for AT defenses, 0 otherwise)")


def _train_fraction(option: str):  # type: ignore[no-untyped-def]
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a fraction of training in [0, 1), got {text!r}") from None
        if not (0 <= v < 1):
            raise argparse.ArgumentTypeError(f"expected a fraction of training in [0, 1), got {text!r}")
        return v
    parse.__name__ = option
    return parse


def add_eval_args(p: argparse.ArgumentParser, attack_option: str = "--attack", default_attack: str = "apgd") -> None:
    p.add_argument(attack_option, dest="eval_attack", choices=ATTACK_NAMES, default=default_attack,
                   help=f"robust-accuracy attack (default {default_attack}): autoattack (AutoAttack's standard "
                   "version: APGD-CE, APGD-T, FAB-T, Square, each on the survivors), apgd (its gradient part, "
                   "APGD-CE then APGD-T), apgd-ce, apgd-t, fab-t, square, or pgd (the reference's PGD, step "
                   "2.5*eps/steps); always run in fp32")
    p.add_argument("--eval-norm", choices=NORMS, default=None, help="robust-accuracy threat (default: the defense's)")
    p.add_argument("--eval-eps", type=fraction_text("--eval-eps"), default=None,
                   help="robust-accuracy budget (train: the defense's; eval: the budget the run was trained and "
                   "evaluated at, from its config.json, else the dataset's default)")
    p.add_argument("--eval-steps", type=positive_int("--eval-steps"), default=None,
                   help="attack iterations (default: 20 for pgd, 100 for APGD and FAB-T; Square counts --eval-queries)")
    p.add_argument("--eval-restarts", type=positive_int("--eval-restarts"), default=1)
    p.add_argument("--eval-queries", type=positive_int("--eval-queries"), default=None,
                   help="Square's query budget (default 5000, AutoAttack's)")
    p.add_argument("--robust-subset", type=positive_int("--robust-subset"), default=EvalPlan.robust_subset,
                   help=f"robust accuracy on a seeded class-stratified subset of N test images (default "
                   f"{EvalPlan.robust_subset}; a number >= the split's size means all)")


def eval_threat(args: argparse.Namespace, dataset: str):  # type: ignore[no-untyped-def]
    """The robust-evaluation threat: --eval-norm/--eval-eps, else the defense's, else the dataset default."""
    base_norm, base_eps = resolve_budget(dataset, getattr(args, "norm", None), getattr(args, "eps", None))
    norm = args.eval_norm or base_norm
    if args.eval_eps is None and norm != base_norm:
        raise UsageError(f"--eval-eps: required when --eval-norm {norm} differs from the defense's norm {base_norm}")
    eps = args.eval_eps or base_eps
    if args.eval_eps is not None:  # the defense's eps was checked (and warned about) by resolve_budget
        check_budget(norm, eps, "--eval-eps")
    return make_threat(norm, eps)


def build_objective(args: argparse.Namespace, dataset: str):  # type: ignore[no-untyped-def]
    norm, eps = resolve_budget(dataset, args.norm, args.eps)
    params = parse_params(args.defense_param, "--defense-param")
    if args.steps is not None:
        params["steps"] = args.steps
    if args.rel_step_size is not None:
        params["rel_step_size"] = args.rel_step_size
    try:
        return create_defense(args.defense, norm, eps, **params)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if args.log == "tensorboard":
        from delusive.experiments.tensorboard_log import require_tensorboard

        require_tensorboard()
    info = dataset_info(args.dataset)
    objective = build_objective(args, args.dataset)
    try:
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
                          precision=args.precision, eps_ramp=args.eps_ramp, lr_warmup=args.lr_warmup,
                          crop_padding=info.crop_padding if args.crop_padding is None else args.crop_padding,
                          hflip=info.hflip if args.hflip is None else args.hflip)
    except ValueError as e:
        raise UsageError(str(e)) from None
    cfg = resolve_recipe(cfg, objective)
    threat = eval_threat(args, args.dataset)
    try:
        plan = EvalPlan(norm=threat.norm_name, eps=threat.eps_text, attack=args.eval_attack, steps=args.eval_steps,
                        restarts=args.eval_restarts, queries=args.eval_queries, robust_subset=args.robust_subset,
                        val_size=args.val_size,
                        select=args.select, epoch_every=args.eval_every)
        run_opts = RunOptions(device=args.device, compile=args.compile, deterministic=args.deterministic,
                              checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes)
        from delusive.runtime import resolve_device

        resolve_device(args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    train_set, poison_meta = load_training_set(args)
    try:  # e.g. grayscale on 1-channel data: refused before --out exists
        check_transforms(objective, train_set.shape)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if train_set.num_classes < 2:  # refused before --out is created (create_model would refuse it later)
        raise ValueError(f"--dataset {args.dataset}: num_classes: must be >= 2, got {train_set.num_classes}")
    check_eval_attack(plan.attack, train_set.num_classes)  # before training, not at the final evaluation
    holdout = holdout_of(args)
    test_set = split_pair(args.dataset, args.data_root, holdout)[1]
    if test_set is None:
        raise UsageError(f"--dataset {args.dataset}: no test split (no test/ folder); hold one out with "
                         "--test-fraction 0.2, or put class folders inside train/ and test/")
    if args.train_subset is not None and args.train_subset > len(train_set):
        warnings.warn(f"--train-subset {args.train_subset} is larger than the training split ({len(train_set)} "
                      "images); training on all of them", stacklevel=1)
    train_set = seeded_subset(train_set, args.train_subset, args.seed)
    torch.manual_seed(args.seed)
    config: dict[str, Any] = {
        "dataset": args.dataset, "train_size": len(train_set), "train_sha256": train_set.sha256(),
        "test_sha256": test_set.sha256(), "poison": poison_meta, **({"holdout": holdout} if holdout else {}),
        "model": args.model,
        "defense": objective.describe(), "train": cfg.to_dict(), "eval": plan.to_dict(),
        "versions": versions(),
    }
    config["run_id"] = config_hash({k: v for k, v in config.items() if k != "versions"})
    out.mkdir(parents=True, exist_ok=True)
    if runtime.is_main():
        atomic_write_json(out / "config.json", config)
    print(f"training {args.model} on {args.dataset} ({len(train_set)} images"
          f"{', poison ' + poison_meta['attack'] if poison_meta else ''}) with {args.defense}"
          f"{' ' + repr(objective.threat) if objective.threat else ''} for {cfg.epochs} epochs -> {out}",
          file=sys.stderr)
    if (out / CHECKPOINT).exists():  # fit checks that it is this run's (and refuses it otherwise)
        print(f"resuming from {out / CHECKPOINT}", file=sys.stderr)
    metrics = train_and_evaluate(args.model, train_set, test_set, objective, cfg, plan, out, run_opts,
                                 desc="train", model_meta={"dataset": args.dataset, "run_id": config["run_id"],
                                             **({"holdout": holdout} if holdout else {})})
    metrics.pop("model")
    history = metrics.pop("history")
    metrics["run_id"] = config["run_id"]
    if not runtime.is_main():
        return 0
    atomic_write_json(out / "metrics.json", metrics)
    if args.log == "tensorboard":
        from delusive.experiments.tensorboard_log import write_run

        print(f"tensorboard log: {write_run(out / 'tensorboard', history, metrics)}", file=sys.stderr)
    att = metrics["robust_attack"]
    print(f"natural_accuracy {metrics['natural_accuracy']:.4f}  robust_accuracy {metrics['robust_accuracy']:.4f} "
          f"({threat!r}, {att['attack']}-{att['steps']}, {metrics['n_robust']} test images)  epoch "
          f"{metrics['selected_epoch']}/{cfg.epochs} ({metrics['selection']})  {_times(metrics)} on "
          f"{metrics['device']['device']}")
    if metrics.get("collapsed"):
        why = metrics.get("collapse_reason") or "the selected epoch was flagged"
        print(f"COLLAPSED: the run ended as (or most of it was) a constant predictor: {why}, flagged from epoch "
              f"{metrics['collapse_epoch']}; metrics.json records it and reports mark it", file=sys.stderr)
    print(f"evaluation: {describe_eval_spec(metrics.get('eval_spec'))} (trained in {metrics.get('precision')})")
    return 0


def _times(metrics: dict[str, Any]) -> str:
    """Training and evaluation time apart: the final robust evaluation can cost far more than training."""
    train_s = float(metrics.get("train_time_s") or 0.0)
    loop_s = float(metrics.get("train_eval_time_s") or train_s)
    wall_s = float(metrics.get("wall_time_s") or loop_s)
    per_epoch, final = max(loop_s - train_s, 0.0), max(wall_s - loop_s, 0.0)
    return (f"train time {train_s:.1f}s, evaluation time {per_epoch + final:.1f}s (per-epoch {per_epoch:.1f}s, "
            f"final {final:.1f}s)")


def load_training_set(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The clean training split, or the poison artifact given by --poison after verifying it against the
    clean split it claims to come from (refusing it when it breaks its budget)."""
    if args.poison is None:
        return split_pair(args.dataset, args.data_root, holdout_of(args))[0], None
    art = load_artifact(args.poison)
    recorded_holdout = art.manifest.get("holdout")
    if recorded_holdout and args.test_fraction is None:  # the artifact's held-out split is the run's test split
        args.test_fraction, args.split_seed = recorded_holdout["fraction"], recorded_holdout["seed"]
    if (recorded_holdout or None) != holdout_of(args):
        raise UsageError(f"--test-fraction: the artifact was crafted with held-out split {recorded_holdout}, "
                         f"not {holdout_of(args)}; give the same --test-fraction/--split-seed (or none)")
    folders = art.manifest["dataset"].startswith("folder:") and args.dataset.startswith("folder:")
    if art.manifest["dataset"] != args.dataset and not folders:  # a folder's identity is its content hash
        raise UsageError(f"--poison: the artifact was made from {art.manifest['dataset']!r}, "
                         f"not --dataset {args.dataset!r}")
    clean = clean_training_set(args.dataset, args.data_root, art.manifest.get("subset"), recorded_holdout)
    recorded = art.manifest.get("class_names")
    if isinstance(recorded, list) and clean.classes is not None and list(clean.classes) != recorded:
        raise UsageError(f"--poison {args.poison}: the artifact's classes ({', '.join(recorded[:6])}) are not "
                         f"--dataset {args.dataset}'s ({', '.join(clean.classes[:6])})")
    report = verify_artifact(art, clean)  # the bytes verified are the bytes trained on
    if not report.ok:
        raise UsageError(f"--poison {args.poison}: verification failed: " + "; ".join(report.problems))
    objective = build_objective(args, args.dataset)
    attack_threat = art.threat()
    if objective.threat is not None and not covers(objective.threat, attack_threat, int(np.prod(clean.shape))):
        warnings.warn(f"the defense's threat model {objective.threat!r} does not cover the attack's "
                      f"{attack_threat!r}: Theorem 1's bound needs the defender's ball to contain the attacker's",
                      stacklevel=2)
    meta = {"attack": art.manifest["attack"], "path": str(args.poison), "threat": art.manifest["threat"],
            "payload_sha256": art.manifest["payload_sha256"]}
    return art.dataset(args.dataset, clean.classes), meta


def versions() -> dict[str, str]:
    return {"delusive": delusive.__version__, "torch": torch.__version__, "python": platform.python_version()}
