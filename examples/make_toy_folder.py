"""Write a small image folder to try the examples on: DIR/<class>/<n>.png, 28×28 grey, four classes.

    python examples/make_toy_folder.py toy --images 1000

Each class is a fixed random pattern plus noise (learnable in an epoch or two). Use your own folder instead:
any DIR/<class name>/<images> layout works, or DIR/train/<class>/... and DIR/test/<class>/... for two splits.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("circle", "cross", "square", "wave")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    patterns = rng.random((len(CLASSES), args.size, args.size)) < 0.3
    for i in range(args.images):
        k = i % len(CLASSES)
        img = np.where(patterns[k], 0.75, 0.25) + rng.normal(0, 0.18, (args.size, args.size))
        d = args.out / CLASSES[k]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(d / f"{i:05d}.png")
    print(f"wrote {args.images} images in {len(CLASSES)} class folders under {args.out}")


if __name__ == "__main__":
    main()
