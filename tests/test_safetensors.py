"""Model weights as safetensors: our small reader/writer agrees byte for byte with the real ``safetensors``
library (the dev extra), refuses malformed files with one line naming them, and a directory with only an old
``model.pt`` still loads (weights_only) while a pickle payload in it is still refused (live control)."""

import json
import struct

import pytest
import torch

from delusive.models import create_model, load_model, model_file, save_model
from delusive.models.safetensors_format import load_file, save_file, tensors_from_bytes, tensors_to_bytes
from test_model_io import _evil_zip, _unpickle_unsafely_in_a_subprocess

SPEC = {"arch": "small-cnn", "num_classes": 4, "in_channels": 1, "image_size": 16, "class_names": list("abcd")}


def _tensors():
    g = torch.Generator().manual_seed(0)  # test-side data; the runtime rule covers src/ only
    return {"w": torch.randn(3, 4, generator=g), "b16": torch.randn(5, generator=g).to(torch.bfloat16),
            "n": torch.arange(6, dtype=torch.int64).reshape(2, 3), "flag": torch.tensor([True, False]),
            "empty": torch.zeros(0, 2), "scalar": torch.tensor(7, dtype=torch.int64),
            "scalar16": torch.tensor(1.5, dtype=torch.bfloat16)}


def test_round_trip_keeps_every_dtype_and_value(tmp_path):
    t = _tensors()
    save_file(t, tmp_path / "x.safetensors", {"k": "v"})
    back, meta = load_file(tmp_path / "x.safetensors")
    assert meta == {"k": "v"} and set(back) == set(t)
    for k in t:
        assert back[k].dtype == t[k].dtype and torch.equal(back[k], t[k])


def test_agrees_with_the_real_safetensors_library(tmp_path):
    import safetensors.torch as st  # the dev extra (scripts/setup.sh installs it): never skipped
    t = _tensors()
    ours = tensors_to_bytes(t, {"k": "v"})
    theirs = st.save(t, metadata={"k": "v"})
    loaded = st.load(ours)  # the library reads what we write (its own layout orders tensors by dtype size)
    assert all(torch.equal(loaded[k], t[k]) for k in t)
    (tmp_path / "theirs.safetensors").write_bytes(theirs)
    back, meta = load_file(tmp_path / "theirs.safetensors")  # and we read what it writes
    assert meta == {"k": "v"} and all(back[k].dtype == t[k].dtype and torch.equal(back[k], t[k]) for k in t)


def _header(obj):
    text = json.dumps(obj).encode()
    return struct.pack("<Q", len(text)) + text


@pytest.mark.parametrize("data, problem", [
    (b"abc", "shorter than the 8-byte header"),
    (struct.pack("<Q", 10**6) + b"{}", "does not fit"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (_header({"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 4, "unknown dtype"),
    (_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}) + b"\0" * 4, "bytes for shape"),
    (_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}) + b"\0" * 8, "gap or overlap"),
    (_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 9, "trailing bytes"),
    (_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}) + b"\0" * 4, "exactly"),
])
def test_malformed_files_are_refused_with_one_line(data, problem):
    with pytest.raises(ValueError, match=problem) as e:
        tensors_from_bytes(data, "bad.safetensors")
    assert str(e.value).startswith("bad.safetensors: not a valid safetensors file") and "\n" not in str(e.value)


def test_model_saved_as_safetensors_loads_with_its_config(tmp_path):
    m = create_model("small-cnn", 4, 1, 16, seed=0)
    save_model(m, tmp_path / "model.safetensors", SPEC)
    assert model_file(tmp_path) == tmp_path / "model.safetensors"
    back, meta = load_model(tmp_path)
    assert meta["class_names"] == list("abcd")
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values(), strict=True))
    _, header_meta = load_file(tmp_path / "model.safetensors")
    assert json.loads(header_meta["delusive_config"])["arch"] == "small-cnn"
    # an edited weight is refused by the recorded hash
    t, md = load_file(tmp_path / "model.safetensors")
    first = sorted(t)[0]
    t[first] = t[first] + 1
    save_file(t, tmp_path / "model.safetensors", md)
    with pytest.raises(ValueError, match="do not match the weights_sha256"):
        load_model(tmp_path)


@pytest.mark.parametrize("arch", ["small-cnn-bn", "small-resnet"])
def test_a_batchnorm_model_round_trips(tmp_path, arch):
    """BatchNorm keeps a 0-dim ``num_batches_tracked``: the writer must store 0-dim tensors too."""
    m = create_model(arch, 4, 1, 16, seed=0)
    m.train()(torch.rand(8, 1, 16, 16))  # move the running statistics and the counter off their initial values
    save_model(m, tmp_path / "model.safetensors", {**SPEC, "arch": arch})
    back, _ = load_model(tmp_path)
    for (k, a), b in zip(m.state_dict().items(), back.state_dict().values(), strict=True):
        assert a.shape == b.shape and torch.equal(a, b), k


def test_old_model_pt_directory_still_loads_and_a_pickle_in_it_is_refused(tmp_path):
    m = create_model("small-cnn", 4, 1, 16, seed=0)
    save_model(m, tmp_path / "model.pt", SPEC)
    assert model_file(tmp_path) == tmp_path / "model.pt"
    back, _ = load_model(tmp_path)
    assert torch.equal(next(iter(back.state_dict().values())), next(iter(m.state_dict().values())))
    marker = tmp_path / "marker"
    _evil_zip(tmp_path / "model.pt", marker, lambda p: {"conv.weight": p})
    _unpickle_unsafely_in_a_subprocess(tmp_path / "model.pt")  # control: the payload is live
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError, match="refusing to unpickle|not a torch.save file"):
        load_model(tmp_path)
    assert not marker.exists()
