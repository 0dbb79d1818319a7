"""Poison sub-commands: ``poison`` (craft), ``verify``, ``show``, ``export`` and ``import``."""

from __future__ import annotations

import argparse
import sys

from delusive.attacks import (
    STORAGES,
    attack_names,
    export_png,
    import_poison,
    load_artifact,
    save_artifact,
    show_artifact,
    verify_artifact,
)
from delusive.cli.common import UsageError, add_device_args, fraction_text, parse_params, positive_int, resolve_budget
from delusive.experiments.poisoning import clean_training_set, make_poison
from delusive.models import DEFAULT_MODEL, classifier_names
from delusive.threat import NORMS, make_threat


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("poison", help="craft a delusive poison (P1-P5, L2C, EM, REM, TAP, SEP, AR, LSP, OPS, CUDA) "
                       "and write a verified artifact")
    p.add_argument("--attack", required=True, choices=attack_names())
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--norm", choices=NORMS, default=None, help="attack threat model (default per dataset)")
    p.add_argument("--eps", type=fraction_text("--eps"), default=None, help="attack budget, e.g. 1.0 or 8/255")
    p.add_argument("--out", required=True, help="artifact directory (resumes an interrupted crafting run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", choices=("auto", *STORAGES), default="auto",
                   help="auto (default): float32 for l2 budgets (uint8 would shrink them), uint8 with δ rounded toward "
                   "zero in 1/255 steps for linf; or force uint8 / float32")
    p.add_argument("--attack-param", action="append", metavar="KEY=VALUE",
                   help="override an attack hyperparameter (steps, rel_step_size, iterations, batch_size, ...)")
    p.add_argument("--reference-schedule", action="store_true",
                   help="use the reference's crafting schedule (100 PGD steps / 500 universal iterations)")
    p.add_argument("--train-subset", type=positive_int("--train-subset"), default=None,
                   help="poison a seeded random subset of the training split (the artifact records it)")
    p.add_argument("--crafting-model", default=None, help="your own model.pt for P1-P4 (default: train one)")
    p.add_argument("--crafting-arch", default=DEFAULT_MODEL, choices=classifier_names())
    p.add_argument("--crafting-epochs", type=positive_int("--crafting-epochs"), default=None)
    p.add_argument("--cache-dir", default=None, help="crafting-model cache (default $DELUSIVE_CACHE or ~/.cache)")
    p.add_argument("--generator", default=None, metavar="PATH",
                   help="L2C only: reuse this trained generator (generator.pt of an earlier L2C artifact, or the "
                   "authors' released MNIST autoencoder state dict, e.g. DeepConfuse's atkmnist_best.pt at --eps 0.3) "
                   "instead of training one")
    add_device_args(p, precision=False)
    p.set_defaults(func=run_poison)

    v = sub.add_parser("verify", help="check a poison artifact against the clean set (labels, box, budget, hash)")
    v.add_argument("artifact")
    v.add_argument("--clean-dataset", default=None, help="dataset name (default: the one in the manifest)")
    v.add_argument("--data-root", default=None)
    v.add_argument("--norm", choices=NORMS, default=None, help="check against this budget instead of the claimed one")
    v.add_argument("--eps", type=fraction_text("--eps"), default=None)
    v.set_defaults(func=run_verify)

    s = sub.add_parser("show", help="draw clean / poisoned / amplified-perturbation rows of an artifact")
    s.add_argument("artifact")
    s.add_argument("--out", required=True, help="PNG file to write")
    s.add_argument("--clean-dataset", default=None)
    s.add_argument("--data-root", default=None)
    s.set_defaults(func=run_show)

    e = sub.add_parser("export", help="export an artifact as PNGs named by training index + labels.csv")
    e.add_argument("artifact")
    e.add_argument("--out", required=True)
    e.set_defaults(func=run_export)

    i = sub.add_parser("import", help="import a released poison (PNG folder, or noise / poisoned-image arrays) as a "
                       "verified artifact")
    i.add_argument("source", help="folder of PNGs with labels.csv, or an array file: .npy / .npz / .pt noise "
                   "(per-sample or per-class, N×C×H×W or N×H×W×C) or uint8 poisoned images (.npz may carry labels)")
    i.add_argument("--clean-dataset", required=True)
    i.add_argument("--data-root", default=None)
    i.add_argument("--norm", choices=NORMS, required=True, help="the budget the imported poison claims")
    i.add_argument("--eps", type=fraction_text("--eps"), required=True)
    i.add_argument("--storage", choices=("auto", *STORAGES), default="auto",
                   help="auto (default): float32 for l2 budgets, uint8 rounded toward zero for linf")
    i.add_argument("--train-subset", type=positive_int("--train-subset"), default=None)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", required=True)
    i.add_argument("--attack-name", default=None, metavar="NAME",
                   help="the attack the poison claims to be (e.g. EM for Huang et al.'s released noise); "
                   "recorded as 'NAME (imported)' with the source's SHA-256")
    i.add_argument("--origin", default=None,
                   help="where the poison came from (URL, citation), recorded in the manifest")
    i.set_defaults(func=run_import)


def run_poison(args: argparse.Namespace) -> int:
    # no --norm/--eps: the attack's own default budget (AR, LSP, OPS, CUDA, EM, ...) or the dataset's
    threat = (None if args.norm is None and args.eps is None
              else make_threat(*resolve_budget(args.dataset, args.norm, args.eps)))
    params = parse_params(args.attack_param, "--attack-param")
    if args.generator is not None:
        if args.attack != "L2C":
            raise UsageError(f"--generator: only L2C uses a generator, not --attack {args.attack}")
        params["generator"] = args.generator
    try:
        art = make_poison(args.attack, args.dataset, threat, args.out, data_root=args.data_root, seed=args.seed,
                          storage=args.storage, attack_params=params,
                          reference_schedule=args.reference_schedule, train_subset=args.train_subset,
                          crafting_model=args.crafting_model, crafting_arch=args.crafting_arch,
                          crafting_epochs=args.crafting_epochs, cache_dir=args.cache_dir, device=args.device)
    except TypeError as e:
        if "unexpected keyword" not in str(e):
            raise
        raise UsageError(str(e)) from None
    st = art.manifest["norm_stats"]
    threat = art.threat()
    print(f"wrote {args.out}: {art.manifest['num_examples']} images, {art.manifest['attack']} "
          f"{threat.norm_name} eps={threat.eps_text}, realised norm min/mean/max "
          f"{st['min']:.4g}/{st['mean']:.4g}/{st['max']:.4g}, payload sha256 {art.manifest['payload_sha256'][:16]}…")
    return 0


def _clean_for(args: argparse.Namespace, manifest: dict) -> object:
    dataset = args.clean_dataset or manifest["dataset"]
    return clean_training_set(dataset, args.data_root, manifest.get("subset"))


def run_verify(args: argparse.Namespace) -> int:
    art = load_artifact(args.artifact)
    expected = None
    if args.norm is not None or args.eps is not None:
        if args.norm is None or args.eps is None:
            raise UsageError("--norm and --eps: give both to check against an expected budget")
        expected = make_threat(args.norm, args.eps)
    report = verify_artifact(art, _clean_for(args, art.manifest), expected)
    if report.ok:
        st = report.norm_stats
        norm, eps = (args.norm, args.eps) if expected else (art.manifest["threat"]["norm"],
                                                            art.manifest["threat"]["eps_text"])
        print(f"OK {args.artifact}: labels unchanged, all images in [0,1], every ‖δ_i‖ ≤ {eps} ({norm}; max "
              f"{st['max']:.6g}), payload hash matches")
        return 0
    print(f"FAILED {args.artifact}:", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def run_show(args: argparse.Namespace) -> int:
    art = load_artifact(args.artifact)
    out = show_artifact(args.artifact, _clean_for(args, art.manifest), args.out)
    print(f"wrote {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    n = export_png(args.artifact, args.out)
    print(f"wrote {n} PNGs and labels.csv to {args.out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    subset = {"size": args.train_subset, "seed": args.seed} if args.train_subset else None
    clean = clean_training_set(args.clean_dataset, args.data_root, subset)
    art = import_poison(args.source, clean, make_threat(args.norm, args.eps), dataset=args.clean_dataset,
                        storage=args.storage, seed=args.seed, extra={"subset": subset}, origin=args.origin,
                        claimed_attack=args.attack_name)
    save_artifact(art, args.out)
    print(f"wrote {args.out}: imported {art.manifest['attack_params']['kind']}, {len(art.labels)} images, "
          f"max norm {art.manifest['norm_stats']['max']:.6g}")
    return 0
