"""``delusive eval``: natural, robust and per-class accuracy of a saved model on a clean test split."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from delusive.cli.common import UsageError, add_data_args, add_device_args, resolve_budget
from delusive.cli.train import add_eval_args
from delusive.data import load_dataset
from delusive.evaluation import describe_eval_spec, evaluate
from delusive.models import load_model
from delusive.runtime import describe_device, prepare_model, resolve_device
from delusive.threat import make_threat
from delusive.utils import atomic_write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a saved model on clean test data")
    p.add_argument("model", help="model.pt or the directory holding it")
    add_data_args(p, dataset_required=False)
    p.add_argument("--split", default="test")
    add_eval_args(p, default_attack="autoattack")
    p.add_argument("--seed", type=int, default=0, help="seed of the robust subset and the attacks' random starts")
    add_device_args(p)
    p.add_argument("--out", default=None, help="also write the metrics as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.precision not in ("auto", "fp32"):
        warnings.warn(f"--precision {args.precision}: ignored, robust evaluation always runs in fp32", stacklevel=1)
    model, meta = load_model(Path(args.model))
    model = prepare_model(model, device)
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise UsageError("--dataset: the model does not record its dataset; give --dataset")
    data = load_dataset(dataset, args.split, root=args.data_root)
    norm, eps = args.eval_norm, args.eval_eps
    trained = _trained_threat(Path(args.model))
    if norm is None and eps is None and trained is not None:  # evaluate at the budget the run was evaluated at
        norm, eps = trained
    threat = make_threat(*resolve_budget(dataset, norm, eps, "--eval-eps"))
    metrics = evaluate(model, data, threat, steps=args.eval_steps, restarts=args.eval_restarts,
                       robust_limit=args.robust_subset, seed=args.seed, attack=args.eval_attack,
                       queries=args.eval_queries)
    metrics["device"] = describe_device(device)
    metrics["train_precision"] = _trained_precision(Path(args.model))
    if args.out:
        atomic_write_json(args.out, metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("robust_attack", "device")}, indent=2))
    att = metrics["robust_attack"]
    print(f"robust accuracy by {att['attack']} ({att['steps']} steps, {threat!r}) on {metrics['n_robust']} test "
          f"images (seeded, class-stratified) on {metrics['device']['device']}")
    trained_in = metrics["train_precision"] or "unknown precision"
    print(f"evaluation: {describe_eval_spec(metrics.get('eval_spec'))} (model trained in {trained_in})")
    return 0


def _trained_threat(model_path: Path) -> tuple[str, str] | None:
    """The evaluation budget recorded by ``delusive train`` beside the model (its config.json), if any."""
    import json

    cfg = (model_path if model_path.is_dir() else model_path.parent) / "config.json"
    try:
        threat = json.loads(cfg.read_text(encoding="utf-8"))["eval"]
        norm, eps = threat["norm"], threat["eps"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (str(norm), str(eps)) if norm and eps else None


def _trained_precision(model_path: Path) -> str | None:
    """The precision the run was trained in: its metrics.json's resolved ``precision``, else its config.json's
    ``train.precision``, if recorded."""
    folder = model_path if model_path.is_dir() else model_path.parent
    for name, keys in (("metrics.json", ("precision",)), ("config.json", ("train", "precision"))):
        try:
            value = json.loads((folder / name).read_text(encoding="utf-8"))
            for k in keys:
                value = value[k]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, str) and value:
            return value
    return None
