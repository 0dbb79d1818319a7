"""``delusive eval``: natural, robust and per-class accuracy of a saved model on a clean test split."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from delusive.cli.common import UsageError, add_data_args, add_device_args, resolve_budget, seed_int
from delusive.cli.train import add_eval_args
from delusive.data import load_dataset
from delusive.evaluation import evaluate
from delusive.evaluation.fit import check_eval_attack, check_model_fits_data
from delusive.models import load_model
from delusive.runtime import describe_device, prepare_model, resolve_device, resolve_precision
from delusive.threat import make_threat
from delusive.utils import atomic_write_json, read_json
from delusive.utils.safefile import UnsafeFileError, member

CONFIG_MAX_BYTES = 4 * 2**20  # a run's config.json is a few kilobytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a saved model on clean test data")
    p.add_argument("model", help="model.pt or the directory holding it")
    add_data_args(p, dataset_required=False)
    p.add_argument("--split", default="test")
    add_eval_args(p)
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the robust subset and the attacks' random starts")
    add_device_args(p)
    p.add_argument("--out", default=None, help="also write the metrics as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    trained = _trained_threat(Path(args.model))  # before any work: a FIFO or /dev/zero here is refused by name
    model, meta = load_model(Path(args.model))
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise UsageError("--dataset: the model does not record its dataset; give --dataset")
    norm, eps, option = args.eval_norm, args.eval_eps, "--eval-eps"
    if norm is None and eps is None and trained is not None:  # evaluate at the budget the run was evaluated at
        norm, eps, option = trained
    threat = make_threat(*resolve_budget(dataset, norm, eps, option))
    data = load_dataset(dataset, args.split, root=args.data_root)
    check_model_fits_data(meta, data, Path(args.model), "--dataset" if args.dataset else "its recorded dataset")
    check_eval_attack(args.eval_attack, data.num_classes)
    model = prepare_model(model, device)
    metrics = evaluate(model, data, threat, steps=args.eval_steps, restarts=args.eval_restarts,
                       robust_limit=args.robust_subset, seed=args.seed, attack=args.eval_attack,
                       precision=resolve_precision(args.precision, device))
    metrics["device"] = describe_device(device)
    if args.out:
        atomic_write_json(args.out, metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("robust_attack", "device")}, indent=2))
    att = metrics["robust_attack"]
    print(f"robust accuracy by {att['attack']} ({att['steps']} steps, {threat!r}) on {metrics['n_robust']} test "
          f"images (seeded, class-stratified) on {metrics['device']['device']}")
    return 0


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
