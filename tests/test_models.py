"""Model registry: every architecture builds for 1×28×28 and 3×32×32, seeds give identical weights,
save/load round-trips without pickle."""

import pytest
import torch

from delusive.models import create_model, load_model, model_hash, model_names, save_model


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("shape", [(1, 28), (3, 32)])
def test_every_model_builds_and_runs(name, shape):
    c, s = shape
    m = create_model(name, 7, c, s, seed=0).eval()
    with torch.no_grad():
        out = m(torch.rand(2, c, s, s))
    assert out.shape == (2, 7)


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = create_model("small-cnn", 10, 1, 28, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = create_model("small-cnn", 10, 1, 28, seed=5)
    c = create_model("small-cnn", 10, 1, 28, seed=6)
    assert model_hash(a) == model_hash(b) != model_hash(c)


def test_unknown_model_and_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="model: unknown name 'vgg13'; expected one of"):
        create_model("vgg13")
    with pytest.raises(ValueError, match="num_classes"):
        create_model("small-cnn", 1)


def test_save_load_roundtrip(tmp_path):
    m = create_model("small-cnn", 10, 1, 28, seed=1)
    save_model(m, tmp_path / "model.pt", {"arch": "small-cnn", "num_classes": 10, "in_channels": 1,
                                           "image_size": 28})
    m2, meta = load_model(tmp_path)
    assert meta["weights_sha256"] == model_hash(m) == model_hash(m2)
    assert not m2.training


def test_load_rejects_a_pickle_payload(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "model.pt").write_bytes(pickle.dumps({"w": Evil()}))
    (tmp_path / "model.json").write_text('{"arch": "small-cnn", "num_classes": 10, "in_channels": 1, '
                                         '"image_size": 28}')
    with pytest.raises(ValueError, match="not a valid delusive model checkpoint"):
        load_model(tmp_path / "model.pt")
