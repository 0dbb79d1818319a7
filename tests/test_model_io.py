"""Model files and training checkpoints from untrusted sources: a pickle payload never runs (with a control
proving the payload is live), edited weights are refused by the recorded hash, and every refusal is one
line naming the file (a ValueError, like a bad model file), never a raw UnpicklingError."""

import json
import os
import subprocess
import sys

import pytest
import torch

from delusive.models import create_model, load_checkpoint, load_model, model_hash, save_checkpoint, save_model

SPEC = {"arch": "small-cnn", "num_classes": 4, "in_channels": 1, "image_size": 16}


class _Payload:
    """Creates ``marker`` when unpickled (``builtins.open(marker, "w")``): a stand-in for os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_zip(path, marker, wrap):
    """A genuine torch.save zip whose pickle holds the payload inside an otherwise plausible dict."""
    torch.save(wrap(_Payload(marker)), path)


def _unpickle_unsafely_in_a_subprocess(*paths):
    code = "import sys, torch\nfor p in sys.argv[1:]:\n    torch.load(p, weights_only=False)\n"
    subprocess.run([sys.executable, "-c", code, *map(str, paths)], check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@pytest.fixture
def saved(tmp_path):
    m = create_model("small-cnn", 4, 1, 16, seed=0)
    save_model(m, tmp_path / "model.pt", SPEC, {"note": "provenance"})
    return tmp_path / "model.pt", m


def test_malicious_model_and_checkpoint_never_run(tmp_path, saved):
    model_pt, _ = saved
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.parent.mkdir()
    m1, m2 = tmp_path / "marker_model", tmp_path / "marker_ckpt"
    _evil_zip(model_pt, m1, lambda p: {"conv.weight": p})
    _evil_zip(ckpt, m2, lambda p: {"identity": "x", "epoch": 0, "model": {}, "history": [p]})
    # control: the payloads are live — unpickled without weights_only they create their markers
    _unpickle_unsafely_in_a_subprocess(model_pt, ckpt)
    assert m1.exists() and m2.exists()
    m1.unlink()
    m2.unlink()
    with pytest.raises(ValueError) as e:
        load_model(model_pt)
    msg = str(e.value)
    assert msg.startswith(f"{model_pt}: not a valid delusive model checkpoint (refusing to unpickle it: ")
    assert "builtins.open" in msg or "io.open" in msg
    assert "\n" not in msg and len(msg) < 400
    with pytest.raises(ValueError) as e:
        load_checkpoint(ckpt)
    msg = str(e.value)
    assert msg.startswith(f"{ckpt}: not a valid delusive training checkpoint (refusing to unpickle it: ")
    assert "\n" not in msg and len(msg) < 400
    assert not m1.exists() and not m2.exists()


def test_edited_weights_are_refused_by_the_recorded_hash(saved):
    path, m = saved
    loaded, meta = load_model(path)  # control: the untouched file loads, with the same weights
    assert model_hash(loaded) == model_hash(m) == meta["weights_sha256"] and meta["note"] == "provenance"
    state = torch.load(path, weights_only=True)
    key = next(iter(state))
    state[key] = state[key].clone()
    state[key].view(-1)[0] += 0.5
    torch.save(state, path)  # a well-formed file with different weights
    with pytest.raises(ValueError, match=r"model\.pt: the weights do not match the weights_sha256 recorded in "
                                         r"model\.json"):
        load_model(path)


def test_a_description_without_the_hash_is_refused(saved):
    path, _ = saved
    meta = json.loads(path.with_suffix(".json").read_text())
    del meta["weights_sha256"]
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"model\.json: no weights_sha256"):
        load_model(path)


def test_extra_provenance_cannot_overwrite_the_hash(tmp_path):
    m = create_model("small-cnn", 4, 1, 16, seed=0)
    save_model(m, tmp_path / "model.pt", SPEC, {"weights_sha256": "0" * 64})
    assert load_model(tmp_path)[1]["weights_sha256"] == model_hash(m)


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, b"PK\x03\x04 truncated zip"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, content):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"identity": "abc", "epoch": 3, "model": {"w": torch.ones(2)}, "history": []})
    assert load_checkpoint(good)["epoch"] == 3  # control
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{bad}: not a valid delusive training checkpoint \(") as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value)
    torch.save([1, 2], bad)  # well-formed but not a checkpoint
    with pytest.raises(ValueError, match="expected a dict, got list"):
        load_checkpoint(bad)


def test_model_file_that_is_a_fifo_is_refused(saved):
    path, _ = saved
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(ValueError, match=r"model\.pt: not a regular file: a FIFO"):
        load_model(path)


def test_bad_model_description_names_the_file(saved):
    path, _ = saved
    path.with_suffix(".json").write_text('{"arch": "small-cnn", "weights_sha256": "x", ')
    with pytest.raises(ValueError, match=r"model\.json: invalid JSON"):
        load_model(path)
    path.with_suffix(".json").write_text(json.dumps({"arch": "nope", "num_classes": 4, "in_channels": 1,
                                                     "image_size": 16, "weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match=r"model\.json: cannot build the described model"):
        load_model(path)
