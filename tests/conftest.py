"""Shared fixtures: a small learnable synthetic dataset and a model trained on it (seconds on a CPU)."""

import os

import pytest

os.environ.setdefault("DELUSIVE_PROGRESS", "0")


@pytest.fixture(scope="session")
def synth():
    from delusive.data import make_synthetic

    return make_synthetic(600, num_classes=4, shape=(1, 16, 16), seed=0)


@pytest.fixture(scope="session")
def synth_model(synth):
    from delusive.defenses import Standard, TrainConfig, fit
    from delusive.models import create_model

    model = create_model("small-cnn", 4, 1, 16, seed=0)
    fit(model, synth, Standard(), TrainConfig(epochs=3, batch_size=64, lr=0.1, seed=0))
    return model.eval()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny tensors: OpenMP synchronisation would cost more than the
    arithmetic (10-100x on a busy 2-core machine). Restored afterwards; determinism is compared within it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
