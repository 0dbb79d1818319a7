"""Training on the real Fashion-MNIST (default suite, ~20 s). Fails, never skips, when the data is missing;
the full bars (≥ 90% standard, PGD-AT ≥ 75% / 60%) are the README's recorded commands and the slow test."""

import pytest

from delusive.data import DataNotFoundError, load_dataset
from delusive.defenses import PGDAT, Standard, TrainConfig, fit
from delusive.evaluation import evaluate
from delusive.experiments.poisoning import seeded_subset
from delusive.models import create_model
from delusive.threat import LinfBall


def _data():
    try:
        return load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    except DataNotFoundError as e:
        raise AssertionError(f"real Fashion-MNIST missing (run `make setup`): {e}") from e


@pytest.mark.realdata
def test_one_epoch_of_standard_training_on_real_fashion_mnist():
    train, test = _data()
    model = create_model("small-cnn", 10, 1, 28, seed=0)
    fit(model, seeded_subset(train, 20000, 0), Standard(), TrainConfig(epochs=1, seed=0))
    # measured 0.8007 with 2 threads and 0.7998 with 1 (fp32 sums in another order): a bound at 0.80 decided
    # by the thread count; 0.78 still fails a model that did not learn (chance is 0.10)
    assert evaluate(model, test)["natural_accuracy"] >= 0.78


@pytest.mark.slow
@pytest.mark.realdata
def test_readme_bars_on_full_fashion_mnist():
    train, test = _data()
    st = create_model("small-cnn", 10, 1, 28, seed=0)
    fit(st, train, Standard(), TrainConfig(epochs=5, seed=0))
    assert evaluate(st, test)["natural_accuracy"] >= 0.90
    at = create_model("small-cnn", 10, 1, 28, seed=0)
    fit(at, train, PGDAT(LinfBall(0.1), steps=5, rel_step_size=0.25), TrainConfig(epochs=5, seed=0))
    m = evaluate(at, test, LinfBall(0.1), steps=20, robust_limit=2000)
    assert m["natural_accuracy"] >= 0.75 and m["robust_accuracy"] >= 0.60
