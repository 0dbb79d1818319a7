"""Poison sub-commands: ``poison`` (craft), ``verify``, ``show``, ``export`` and ``import``."""

from __future__ import annotations

import argparse
import sys

import numpy as np

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
from delusive.attacks.defaults import CPU_MAX_VALUES, SCHEDULES
from delusive.attacks.hf import export_hf, is_hf_folder
from delusive.cli.common import (
    UsageError,
    add_device_args,
    add_test_fraction,
    fraction_text,
    holdout_of,
    parse_params,
    positive_int,
    resolve_budget,
    seed_int,
)
from delusive.experiments.poisoning import clean_dataset_of, clean_training_set, make_poison
from delusive.models import DEFAULT_MODEL, classifier_names
from delusive.threat import NORMS, make_threat


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("poison", help="craft a delusive poison (P1-P5, L2C, EM, REM, TAP, SEP, AR, LSP, OPS, CUDA; "
                       "see --attack) and write a verified artifact")
    p.add_argument("--attack", required=True, choices=attack_names())
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--norm", choices=NORMS, default=None, help="attack threat model (default per dataset)")
    p.add_argument("--eps", type=fraction_text("--eps"), default=None, help="attack budget, e.g. 1.0 or 8/255")
    p.add_argument("--out", required=True, help="artifact directory (resumes an interrupted crafting run)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--storage", choices=("auto", *STORAGES), default="auto",
                   help="auto (default): float32 for l2 budgets (uint8 would shrink them), uint8 with δ rounded toward "
                   "zero in 1/255 steps for linf; or force uint8 / float32")
    p.add_argument("--attack-param", action="append", metavar="KEY=VALUE",
                   help="override an attack hyperparameter (steps, rel_step_size, iterations, batch_size, ...)")
    p.add_argument("--schedule", choices=SCHEDULES, default="auto",
                   help="crafting schedule: auto (default: the light cpu schedule for images of at most "
                   f"{CPU_MAX_VALUES} values, e.g. 28×28 grey; the reference's for larger ones), cpu, or reference "
                   "(the paper's: 100 PGD steps, 500 universal iterations, L2C's 1000 trials); recorded in the "
                   "artifact")
    p.add_argument("--reference-schedule", action="store_true", help="same as --schedule reference")
    p.add_argument("--train-subset", type=positive_int("--train-subset"), default=None,
                   help="poison a seeded random subset of the training split (the artifact records it)")
    add_test_fraction(p, "poison the rest")
    p.add_argument("--crafting-model", default=None,
                   help="your own crafting model for P1-P4: a delusive train run directory or its model.safetensors "
                   "/ model.pt (default: train one)")
    p.add_argument("--crafting-arch", default=DEFAULT_MODEL, choices=classifier_names())
    p.add_argument("--crafting-epochs", type=positive_int("--crafting-epochs"), default=None)
    p.add_argument("--cache-dir", default=None, help="crafting-model cache (default $DELUSIVE_CACHE or ~/.cache)")
    p.add_argument("--generator", default=None, metavar="PATH",
                   help="L2C only: reuse this trained generator (generator.pt of an earlier L2C artifact, or the "
                   "authors' released MNIST autoencoder state dict, e.g. DeepConfuse's atkmnist_best.pt at --eps 0.3) "
                   "instead of training one")
    add_device_args(p, precision_default="fp32", deterministic=True)
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

    e = sub.add_parser("export", help="export an artifact as PNGs: a plain folder + labels.csv, or a Hugging Face "
                       "imagefolder dataset with a dataset card (--format hf)")
    e.add_argument("artifact")
    e.add_argument("--out", required=True)
    e.add_argument("--format", choices=("png", "hf"), default="png",
                   help="png (default): OUT/<index>.png + labels.csv; hf: OUT/train/<class>/<index>.png + "
                   "metadata.csv + README.md dataset card, loadable with datasets.load_dataset('imagefolder', "
                   "data_dir=OUT)")
    e.set_defaults(func=run_export)

    i = sub.add_parser("import", help="import a released poison (PNG folder, Hugging Face export, or noise / "
                       "poisoned-image arrays) as a verified artifact")
    i.add_argument("source", help="folder of PNGs with labels.csv, a folder written by export --format hf, or an array "
                   "file: .npy / .npz / .pt noise (per-sample or per-class, N×C×H×W or N×H×W×C) or uint8 poisoned "
                   "images (.npz may carry labels)")
    i.add_argument("--clean-dataset", required=True)
    i.add_argument("--data-root", default=None)
    i.add_argument("--norm", choices=NORMS, default=None,
                   help="the budget the imported poison claims (required, except for an export --format hf folder, "
                   "whose manifest states it)")
    i.add_argument("--eps", type=fraction_text("--eps"), default=None)
    i.add_argument("--storage", choices=("auto", *STORAGES), default="auto",
                   help="auto (default): float32 for l2 budgets, uint8 rounded toward zero for linf")
    i.add_argument("--train-subset", type=positive_int("--train-subset"), default=None)
    i.add_argument("--seed", type=seed_int, default=0)
    i.add_argument("--out", required=True)
    i.add_argument("--attack-name", default=None, metavar="NAME",
                   help="the attack the poison claims to be (e.g. EM for Huang et al.'s released noise); "
                   "recorded as 'NAME (imported)' with the source's SHA-256")
    i.add_argument("--origin", default=None,
                   help="where the poison came from (URL, citation), recorded in the manifest")
    i.set_defaults(func=run_import)


def run_poison(args: argparse.Namespace) -> int:
    if args.reference_schedule and args.schedule not in ("auto", "reference"):
        raise UsageError(f"--reference-schedule: conflicts with --schedule {args.schedule}; give one of them")

    from delusive.runtime import resolve_device

    try:  # an unavailable device is one clear error before any work, whether or not the attack uses it
        resolve_device(args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
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
                          crafting_epochs=args.crafting_epochs, cache_dir=args.cache_dir, device=args.device,
                          schedule=args.schedule, holdout=holdout_of(args), precision=args.precision,
                          deterministic=args.deterministic)
    except TypeError as e:
        if "unexpected keyword" not in str(e):
            raise
        raise UsageError(str(e)) from None
    st = art.manifest["norm_stats"]
    threat = art.threat()
    print(f"wrote {args.out}: {art.manifest['num_examples']} images, {art.manifest['attack']} "
          f"{threat.norm_name} eps={threat.eps_text}, realised norm min/mean/max "
          f"{st['min']:.4g}/{st['mean']:.4g}/{st['max']:.4g}, payload sha256 {art.manifest['payload_sha256'][:16]}…")
    if art.manifest["storage"] == "uint8" and st["max"] < threat.eps - 0.5 / 255:
        print(f"note: uint8 storage rounds every δ toward zero in 1/255 steps, so a perturbation strictly inside "
              f"the ball (here max {st['max'] * 255:.0f}/255) loses its last partial level; --storage float32 keeps "
              f"all of it", file=sys.stderr)
    return 0


def _clean_for(args: argparse.Namespace, manifest: dict) -> object:
    dataset = args.clean_dataset or clean_dataset_of(manifest)
    return clean_training_set(dataset, args.data_root, manifest.get("subset"), manifest.get("holdout"))


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
    if args.format == "hf":
        n = export_hf(args.artifact, args.out)
        print(f"wrote {n} PNGs, train/metadata.csv and a dataset card README.md to {args.out} (load it with "
              f"datasets.load_dataset('imagefolder', data_dir={args.out!r}))")
        return 0
    n = export_png(args.artifact, args.out)
    print(f"wrote {n} PNGs and labels.csv to {args.out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    if is_hf_folder(args.source):
        return _import_hf(args)
    if args.norm is None or args.eps is None:
        raise UsageError("--norm and --eps: required to import this source (only an export --format hf folder "
                         "states its own budget)")
    subset = {"size": args.train_subset, "seed": args.seed} if args.train_subset else None
    clean = clean_training_set(args.clean_dataset, args.data_root, subset)
    art = import_poison(args.source, clean, make_threat(args.norm, args.eps), dataset=args.clean_dataset,
                        storage=args.storage, seed=args.seed, extra={"subset": subset}, origin=args.origin,
                        claimed_attack=args.attack_name)
    save_artifact(art, args.out)
    print(f"wrote {args.out}: imported {art.manifest['attack_params']['kind']}, {len(art.labels)} images, "
          f"max norm {art.manifest['norm_stats']['max']:.6g}")
    return 0


def _import_hf(args: argparse.Namespace) -> int:
    """An ``export --format hf`` folder: images by training index from its metadata, budget and provenance from
    its manifest (or --norm/--eps), rebuilt and checked against the clean set like a crafted poison."""
    import json

    from delusive.attacks import build_artifact
    from delusive.attacks.hf import MANIFEST_NAME, read_hf
    from delusive.utils.safefile import member, read_regular_bytes

    exported = json.loads(read_regular_bytes(member(args.source, MANIFEST_NAME, "manifest")).decode("utf-8"))
    subset = exported.get("subset") if args.train_subset is None else {"size": args.train_subset, "seed": args.seed}
    clean = clean_training_set(args.clean_dataset, args.data_root, subset, exported.get("holdout"))
    images, manifest = read_hf(args.source, clean)
    if args.norm is not None or args.eps is not None:
        if args.norm is None or args.eps is None:
            raise UsageError("--norm and --eps: give both to check against another budget than the stated one")
        threat = make_threat(args.norm, args.eps)
    else:
        threat = make_threat(manifest["threat"]["norm"], manifest["threat"]["eps_text"])
    keep = ("attack_params", "crafting_model", "schedule", "class_names", "holdout", "source_path")
    art = build_artifact(clean, images.astype(np.float32) / 255.0, threat, attack=str(manifest.get("attack")),
                         attack_params=manifest.get("attack_params") or {}, dataset=args.clean_dataset,
                         seed=int(manifest.get("seed", args.seed)), storage="uint8" if args.storage == "auto"
                         else args.storage, extra={"subset": subset, "imported_from": {
                             "format": "hf", "payload_sha256": manifest.get("payload_sha256")},
                             **{k: manifest[k] for k in keep if k in manifest and k != "attack_params"}})
    save_artifact(art, args.out)
    same = art.manifest["files"]["images.npy"] == manifest.get("files", {}).get("images.npy")
    print(f"wrote {args.out}: imported {manifest.get('attack')} ({len(art.labels)} images) within "
          f"{threat.norm_name} eps={threat.eps_text}, max norm {art.manifest['norm_stats']['max']:.6g}; images "
          f"{'identical to' if same else 'rounded to 8 bits from'} the exported artifact's")
    return 0
