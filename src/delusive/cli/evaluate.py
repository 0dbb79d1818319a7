"""``delusive eval``: natural, robust and per-class accuracy of a saved model on a clean test split."""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

from delusive.cli.common import (
    UsageError,
    add_data_args,
    add_device_args,
    add_test_fraction,
    holdout_of,
    resolve_budget,
    seed_int,
)
from delusive.cli.train import add_eval_args
from delusive.data import holdout_split, load_dataset
from delusive.evaluation import describe_eval_spec, evaluate
from delusive.evaluation.fit import check_eval_attack, check_model_fits_data
from delusive.models import load_model
from delusive.runtime import describe_device, prepare_model, resolve_device
from delusive.threat import make_threat
from delusive.utils import atomic_write_json, read_json
from delusive.utils.safefile import UnsafeFileError, member

CONFIG_MAX_BYTES = 4 * 2**20  # a run's config.json is a few kilobytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a saved model on clean test data")
    p.add_argument("model", help="a run directory (model.safetensors or model.pt, with model.json) or the weights file")
    add_data_args(p, dataset_required=False)
    p.add_argument("--split", default="test")
    add_eval_args(p, default_attack="autoattack")
    add_test_fraction(p, "evaluate on it (default: the held-out split the model was trained with, if any)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the robust subset and the attacks' random starts")
    add_device_args(p)
    p.add_argument("--out", default=None, help="also write the metrics as JSON to this file")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.precision not in ("auto", "fp32"):
        warnings.warn(f"--precision {args.precision}: ignored, robust evaluation always runs in fp32", stacklevel=1)
    trained = _trained_threat(Path(args.model))  # before any work: a FIFO or /dev/zero here is refused by name
    model, meta = load_model(Path(args.model))
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise UsageError("--dataset: the model does not record its dataset; give --dataset")
    holdout = holdout_of(args) or (meta.get("holdout") if dataset == meta.get("dataset") else None)
    if holdout and args.split == "test":  # the part of the training split that the run held out
        data = holdout_split(load_dataset(dataset, "train", root=args.data_root), float(holdout["fraction"]),
                             int(holdout["seed"]))[1]
    else:
        data = load_dataset(dataset, args.split, root=args.data_root)
    check_model_fits_data(meta, data, Path(args.model), "--dataset" if args.dataset else "its recorded dataset")
    check_class_names(meta.get("class_names"), data, f"--dataset {dataset}")
    check_eval_attack(args.eval_attack, data.num_classes)
    norm, eps, option = args.eval_norm, args.eval_eps, "--eval-eps"
    if norm is None and eps is None and trained is not None:  # evaluate at the budget the run was evaluated at
        norm, eps, option = trained
    threat = make_threat(*resolve_budget(dataset, norm, eps, option))
    model = prepare_model(model, device)
    t0 = time.perf_counter()
    metrics = evaluate(model, data, threat, steps=args.eval_steps, restarts=args.eval_restarts,
                       robust_limit=args.robust_subset, seed=args.seed, attack=args.eval_attack,
                       queries=args.eval_queries)
    metrics["device"] = describe_device(device)
    metrics["eval_time_s"] = time.perf_counter() - t0
    metrics["train_precision"] = _trained_precision(Path(args.model))
    names = data.classes or tuple(meta.get("class_names") or ()) or tuple(str(k) for k in range(data.num_classes))
    metrics["class_names"] = list(names)
    if args.out:
        atomic_write_json(args.out, metrics)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(format_table(metrics, f"{dataset} [{args.split}]", threat))
    trained_in = metrics["train_precision"] or "unknown precision"
    print(f"evaluation: {describe_eval_spec(metrics.get('eval_spec'))} (model trained in {trained_in})")
    return 0


def check_class_names(recorded: object, data: object, option: str) -> None:
    """Refuse data whose classes are not the model's: labels would be scored against the wrong names."""
    classes = getattr(data, "classes", None)
    k = getattr(data, "num_classes", None)
    if isinstance(recorded, list) and recorded and classes is not None and list(classes) != list(recorded):
        raise ValueError(f"{option}: its classes ({', '.join(classes[:6])}{', …' if len(classes) > 6 else ''}) "
                         f"are not the model's ({', '.join(map(str, recorded[:6]))}"
                         f"{', …' if len(recorded) > 6 else ''}); evaluate on the data the model was trained for")
    if isinstance(recorded, list) and recorded and k is not None and len(recorded) != k:
        raise ValueError(f"{option}: {k} classes, the model has {len(recorded)}")


def _pct(v: object) -> str:
    return "—" if v is None else f"{100 * float(v):6.2f}%"  # type: ignore[arg-type]


def format_table(metrics: dict, data_text: str, threat: object) -> str:
    """The metrics as a table people read: accuracies in percent, per class with the class names."""
    att = metrics.get("robust_attack") or {}
    lines = [f"data      {data_text}: {metrics['n_test']} images",
             f"natural   {_pct(metrics['natural_accuracy'])}"]
    if "robust_accuracy" in metrics:
        lines.append(f"robust    {_pct(metrics['robust_accuracy'])}   {att.get('attack')}-{att.get('steps')} within "
                     f"{threat!r} on {metrics['n_robust']} test images (seeded, class-stratified)")
    names = metrics.get("class_names") or []
    width = max([len(str(n)) for n in names] + [5])
    lines.append("per class (natural accuracy):")
    for name, acc in zip(names, metrics.get("per_class_accuracy", []), strict=False):
        lines.append(f"  {str(name):<{width}}  {_pct(acc)}")
    lines.append(f"evaluated in {metrics['eval_time_s']:.1f}s on {metrics['device']['device']}")
    return "\n".join(lines)


def _trained_threat(model_path: Path) -> tuple[str, str, str] | None:
    """(norm, eps, where) of the evaluation budget recorded by ``delusive train`` beside the model (its
    config.json), if any. The file must be a regular file inside the model's folder of bounded size (a FIFO,
    ``/dev/zero`` or a link to a file elsewhere is refused by name, never read); a file that is not a run
    config (bad JSON, no ``eval``) is ignored, as a missing one is."""
    folder = model_path if model_path.is_dir() else model_path.parent
    if not os.path.lexists(folder / "config.json"):
        return None
    cfg = member(folder, "config.json", "the run config")
    try:
        threat = read_json(cfg, CONFIG_MAX_BYTES)["eval"]
        norm, eps = threat["norm"], threat["eps"]
    except UnsafeFileError:
        raise
    except (ValueError, KeyError, TypeError):
        return None
    return (str(norm), str(eps), f"{cfg}: eval.eps") if norm and eps else None


def _trained_precision(model_path: Path) -> str | None:
    """The precision the run was trained in: its metrics.json's resolved ``precision``, else its config.json's
    ``train.precision``, if recorded (each read as a bounded regular file inside the run's folder)."""
    folder = model_path if model_path.is_dir() else model_path.parent
    for name, keys in (("metrics.json", ("precision",)), ("config.json", ("train", "precision"))):
        if not os.path.lexists(folder / name):
            continue
        try:
            value = read_json(member(folder, name, "the run's record"), CONFIG_MAX_BYTES)
            for k in keys:
                value = value[k]
        except UnsafeFileError:
            raise
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, str) and value:
            return value
    return None
