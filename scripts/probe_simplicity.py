"""Probe for Section 5.3 (simplicity bias): one training run on a composite dataset, printing accuracy on the
composite test split and on its MNIST-randomized split, and the per-epoch training loss (a loss stuck at ln 2
is the collapse to a constant prediction). The runs quoted in docs/results.md §12 (the hard clothing pair, the
learning-rate choice, the ε warm-up) are invocations of this script.

Usage: python scripts/probe_simplicity.py DATASET LR MODEL {st,linf,region,regionwarm} [EPOCHS]
  e.g. python scripts/probe_simplicity.py mnist-fashion:2,4 0.01 small-cnn-bn regionwarm 6
st: standard training; linf: PGD-AT in the whole-image linf 0.3 ball; region: PGD-AT with linf 1 on the digit
block only (the paper's region threat model); regionwarm: the same with eps_warmup=0.5. PGD: 5 steps of eps/4.
"""

import sys
import tempfile
import time

from delusive.data import load_dataset
from delusive.defenses import PGDAT, Standard, TrainConfig
from delusive.experiments.pipeline import EvalPlan, RunOptions, train_and_evaluate
from delusive.threat import LinfBall, Masked, half_mask


def main() -> None:
    name, lr, arch, kind = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    epochs = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    train, test, randomized = (load_dataset(name, s) for s in ("train", "test", "test-randomized"))
    region = Masked(LinfBall(1.0), half_mask(train.shape, "top"))
    objective = {"st": Standard(), "linf": PGDAT(LinfBall(0.3), steps=5, rel_step_size=0.25),
                 "region": PGDAT(region, steps=5, rel_step_size=0.25),
                 "regionwarm": PGDAT(region, steps=5, rel_step_size=0.25, eps_warmup=0.5)}[kind]
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        rec = train_and_evaluate(arch, train, test, objective, TrainConfig(epochs=epochs, lr=lr, precision="fp32"),
                                 EvalPlan(val_size=0, select="last"), d, RunOptions(device="cpu"),
                                 extra_tests={"test-randomized": randomized})
    print(name, kind, arch, f"lr {lr}", f"epochs {epochs}", f"test {rec['natural_accuracy']:.4f}",
          f"test-randomized {rec['split_accuracy']['test-randomized']:.4f}",
          "train loss", [round(h["train_loss"], 3) for h in rec["history"]], f"{time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
