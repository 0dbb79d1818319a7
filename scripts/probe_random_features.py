"""Control for Section 5.2's downstream metric: the linear-probe accuracy of an *untrained* rotation
network. `ssl-fmnist` reports the probe accuracy of features learned on (poisoned) rotated images; that number
only says something about the pretext training if it stands clearly above what the same architecture's
random features already give. This prints, per model and seed, the probe accuracy (the same
`evaluation.probe.linear_probe` the sweeps use: multinomial logistic regression on the input of the last
linear layer, fitted on the full clean Fashion-MNIST training set, accuracy on its test set) of a freshly
initialised 4-way rotation predictor. Quoted in docs/results.md §14.

Usage: python scripts/probe_random_features.py [MODEL ...]   (default: small-cnn small-cnn-bn; seeds 0, 1, 2)
"""

import sys
import time

from delusive import runtime
from delusive.data import load_dataset
from delusive.evaluation.probe import linear_probe
from delusive.models import create_model


def main() -> None:
    models = sys.argv[1:] or ["small-cnn", "small-cnn-bn"]
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    c, size = train.shape[0], train.shape[-1]
    cpu = runtime.resolve_device("cpu")
    for arch in models:
        for seed in (0, 1, 2):
            t0 = time.time()
            model = runtime.prepare_model(create_model(arch, 4, c, size, seed=seed), cpu).eval()
            probe = linear_probe(model, train, test)
            print(f"{arch} seed {seed}: untrained features ({probe['layer']}, {probe['feature_dim']} dims) "
                  f"probe test accuracy {100 * probe['test_accuracy']:.2f}%  train {100 * probe['train_accuracy']:.2f}%"
                  f"  ({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
