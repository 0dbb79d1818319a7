"""Your own image folder as a first-class dataset: the crafting schedule follows the image size (never the
name) and is printed and recorded with the budget; an artifact verifies from any working directory and says
where its folder was when it moved; ``--test-fraction`` holds out a seeded test split; class names travel with
models and artifacts and a mismatch is one clear error; ``eval`` prints a table or JSON; Hugging Face export
loads with the real ``datasets`` library and imports back verified; ``data check`` reads both exports;
TensorBoard logging writes events or names the missing extra; warnings are one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from delusive.attacks.defaults import CPU_28PX, REFERENCE, auto_schedule, default_attack_params
from delusive.cli.main import main
from delusive.data import holdout_split, load_dataset, make_synthetic

ROOT = Path(__file__).resolve().parents[1]
FAST_TRAIN = ["--epochs", "1", "--val-size", "0", "--robust-subset", "8", "--eval-steps", "1", "--eval-attack", "pgd",
              "--device", "cpu"]


def _folder(root: Path, names: tuple[str, ...], n: int = 80, size: int = 28) -> Path:
    ds = make_synthetic(n, len(names), (1, size, size), seed=0)
    for i in range(n):
        d = root / names[ds.y[i]]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.x[i, 0]).save(d / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    base = tmp_path_factory.mktemp("folder")
    _folder(base / "pets", ("cat", "dog", "fox", "owl"))
    _folder(base / "tools", ("awl", "axe", "saw", "vise"))
    return base


def run(capsys, *argv):
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_schedule_follows_the_image_size_not_the_name():
    assert auto_schedule((1, 28, 28)) == "cpu" and auto_schedule((1, 56, 28)) == "cpu"
    assert auto_schedule((3, 32, 32)) == "reference" and auto_schedule(None) == "reference"
    cpu = {**REFERENCE["P1"], **CPU_28PX["P1"]}
    assert default_attack_params("P1", shape=(1, 28, 28)) == cpu
    assert default_attack_params("P1", "fashion-mnist") == cpu != default_attack_params("P1", "cifar10")
    assert default_attack_params("P1", shape=(1, 28, 28), schedule="reference") == REFERENCE["P1"]
    assert default_attack_params("L2C", shape=(3, 32, 32), schedule="cpu")["trials"] == CPU_28PX["L2C"]["trials"]


def test_poison_prints_budget_and_schedule_and_verifies_from_anywhere(work, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(work)
    monkeypatch.setenv("DELUSIVE_CACHE", str(work / "cache"))
    code, out, err = run(capsys, "poison", "--attack", "P3", "--dataset", "folder:pets", "--out", "art/p3",
                         "--attack-param", "iterations=2", "--crafting-epochs", "1", "--device", "cpu")
    assert code == 0, err
    assert "within linf eps=8/255, cpu schedule (auto: iterations 2, batch_size 128)" in err
    manifest = json.loads((work / "art/p3/manifest.json").read_text())
    assert manifest["schedule"] == "cpu" and manifest["source_path"] == str((work / "pets").resolve())
    assert manifest["class_names"] == ["cat", "dog", "fox", "owl"]
    monkeypatch.chdir(tmp_path)  # another working directory: the recorded resolved path is used
    code, out, err = run(capsys, "verify", work / "art/p3")
    assert code == 0 and out.startswith("OK "), err
    code, _, err = run(capsys, "poison", "--attack", "P5", "--dataset", f"folder:{work / 'pets'}", "--out",
                       "p5ref", "--schedule", "reference")
    assert code == 0 and "reference schedule" in err
    assert json.loads((tmp_path / "p5ref/manifest.json").read_text())["schedule"] == "reference"


def test_verify_of_a_moved_folder_says_where_it_was(work, capsys, monkeypatch, tmp_path):
    src = _folder(tmp_path / "mine", ("a", "b"), n=20)
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "poison", "--attack", "P5", "--dataset", "folder:mine", "--out", "art")[0] == 0
    src.rename(tmp_path / "moved")
    code, _, err = run(capsys, "verify", "art")
    assert code == 1 and f"crafted from {src}" in err and "--clean-dataset folder:NEW_PATH" in err
    code, out, _ = run(capsys, "verify", "art", "--clean-dataset", "folder:moved")
    assert code == 0 and out.startswith("OK ")
    # a different folder under the old name fails on the content hash, not silently
    _folder(tmp_path / "mine", ("a", "b"), n=22)
    code, _, err = run(capsys, "verify", "art")
    assert code == 1 and "different dataset" in err


def test_holdout_split_is_seeded_stratified_and_disjoint():
    ds = make_synthetic(100, 4, (1, 8, 8), seed=0)
    tr, te = holdout_split(ds, 0.2, seed=0)
    tr2, te2 = holdout_split(ds, 0.2, seed=0)
    assert len(te) == 20 and len(tr) == 80 and np.array_equal(te.x, te2.x)
    assert np.bincount(te.y, minlength=4).tolist() == [5, 5, 5, 5]
    assert not np.array_equal(holdout_split(ds, 0.2, seed=1)[1].x, te.x)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        holdout_split(ds, 1.0)


def test_train_eval_with_a_held_out_split_and_class_names(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    code, _, err = run(capsys, "train", "--dataset", "folder:pets", "--out", "runs/x", *FAST_TRAIN)
    assert code == 2 and "--test-fraction 0.2" in err
    code, out, err = run(capsys, "train", "--dataset", "folder:pets", "--test-fraction", "0.25", "--out", "runs/st",
                         *FAST_TRAIN)
    assert code == 0, err
    assert "train time" in out and "evaluation time" in out and "final" in out
    cfg = json.loads((work / "runs/st/config.json").read_text())
    assert cfg["holdout"] == {"fraction": 0.25, "seed": 0} and cfg["train_size"] == 60
    meta = json.loads((work / "runs/st/model.json").read_text())
    assert meta["class_names"] == ["cat", "dog", "fox", "owl"] and (work / "runs/st/model.safetensors").exists()
    code, out, err = run(capsys, "eval", "runs/st", "--attack", "pgd", "--eval-steps", "1", "--robust-subset", "8")
    assert code == 0, err
    assert "20 images" in out and "cat" in out and "owl" in out and "%" in out  # the held-out 25%, per class
    code, out, _ = run(capsys, "eval", "runs/st", "--json", "--out", "e.json", "--attack", "pgd", "--eval-steps",
                       "1", "--robust-subset", "8")
    assert code == 0 and json.loads(out)["class_names"] == ["cat", "dog", "fox", "owl"]
    assert json.loads((work / "e.json").read_text())["n_test"] == 20
    code, _, err = run(capsys, "eval", "runs/st", "--dataset", "folder:tools", "--test-fraction", "0.25")
    assert code == 1 and "are not the model's" in err and "awl" in err and "cat" in err


def test_train_on_a_poison_checks_class_names_and_reuses_its_held_out_split(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    monkeypatch.setenv("DELUSIVE_CACHE", str(work / "cache"))
    assert run(capsys, "poison", "--attack", "P5", "--dataset", "folder:pets", "--test-fraction", "0.25", "--out",
               "art/p5h")[0] == 0
    code, out, err = run(capsys, "train", "--dataset", "folder:pets", "--poison", "art/p5h", "--out", "runs/p5",
                         *FAST_TRAIN)
    assert code == 0, err
    assert json.loads((work / "runs/p5/config.json").read_text())["holdout"]["fraction"] == 0.25
    code, _, err = run(capsys, "train", "--dataset", "folder:pets", "--poison", "art/p5h", "--test-fraction", "0.5",
                       "--out", "runs/bad", *FAST_TRAIN)
    assert code == 2 and "held-out split" in err
    code, _, err = run(capsys, "train", "--dataset", "folder:tools", "--poison", "art/p5h", "--out", "runs/bad2",
                       *FAST_TRAIN)
    assert code == 2 and "classes (cat, dog, fox, owl) are not" in err


def test_hf_export_loads_with_datasets_and_imports_back_verified(work, capsys, monkeypatch, tmp_path):
    import datasets  # the dev extra (scripts/setup.sh installs it): never skipped

    monkeypatch.chdir(work)
    monkeypatch.setenv("DELUSIVE_CACHE", str(work / "cache"))
    assert run(capsys, "poison", "--attack", "P5", "--dataset", "folder:pets", "--out", "art/hfsrc")[0] == 0
    code, out, err = run(capsys, "export", "art/hfsrc", "--format", "hf", "--out", tmp_path / "hf")
    assert code == 0, err
    card = (tmp_path / "hf/README.md").read_text()
    assert "linf ε = 8/255" in card and "P5" in card and "cat" in card and "payload sha256" in card
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "hf"), cache_dir=str(tmp_path / "hfc"))["train"]
    assert len(ds) == 80 and {"image", "index", "label", "class_name"} <= set(ds.column_names)
    clean = load_dataset("folder:pets", "train")
    row = ds[int(np.flatnonzero(np.array(ds["index"]) == 7)[0])]
    assert row["label"] == clean.y[7] and row["class_name"] == clean.classes[clean.y[7]]
    poisoned = np.load(work / "art/hfsrc/images.npy")
    assert np.array_equal(np.asarray(row["image"])[None], poisoned[7])  # the exported pixels, exactly
    code, out, err = run(capsys, "import", tmp_path / "hf", "--clean-dataset", "folder:pets", "--out", "art/back")
    assert code == 0 and "identical to the exported artifact's" in out, err
    code, out, _ = run(capsys, "verify", "art/back")
    assert code == 0 and out.startswith("OK ")
    # a relabelled row is refused with the line named (a delusive poison never relabels)
    meta = tmp_path / "hf/train/metadata.csv"
    lines = meta.read_text().splitlines()
    name, idx, label, cname = lines[1].split(",")
    lines[1] = ",".join([name, idx, str((int(label) + 1) % 4), cname])
    meta.write_text("\n".join(lines) + "\n")
    code, _, err = run(capsys, "import", tmp_path / "hf", "--clean-dataset", "folder:pets", "--out", "art/bad")
    assert code == 1 and "metadata.csv: line 2" in err and "never relabels" in err


def test_data_check_reads_both_exports(work, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(work)
    assert run(capsys, "poison", "--attack", "P5", "--dataset", "folder:pets", "--out", "art/chk")[0] == 0
    assert run(capsys, "export", "art/chk", "--out", tmp_path / "png")[0] == 0
    assert run(capsys, "export", "art/chk", "--format", "hf", "--out", tmp_path / "hf")[0] == 0
    for folder in ("png", "hf"):
        code, out, err = run(capsys, "data", "check", f"folder:{tmp_path / folder}")
        assert code == 0 and "80 × 1×28×28" in out, err


def test_tensorboard_log_writes_events_or_names_the_extra(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    code, out, err = run(capsys, "train", "--dataset", "folder:pets", "--test-fraction", "0.25", "--log",
                         "tensorboard", "--out", "runs/tb", *FAST_TRAIN)
    assert code == 0, err
    assert list((work / "runs/tb/tensorboard").glob("events.out.tfevents.*"))
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("tensorboard") or name == "torch.utils.tensorboard":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    code, _, err = run(capsys, "train", "--dataset", "folder:pets", "--test-fraction", "0.25", "--log",
                       "tensorboard", "--out", "runs/tb2", *FAST_TRAIN)
    assert code == 1 and "delusive[tensorboard]" in err and not (work / "runs/tb2").exists()


def test_a_warning_is_one_line_without_a_source_path(work, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DELUSIVE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    env.pop("DELUSIVE_TRACEBACK", None)
    res = subprocess.run([sys.executable, "-m", "delusive", "train", "--dataset", f"folder:{work / 'pets'}",
                          "--test-fraction", "0.25", "--eps", "0", "--out", str(tmp_path / "w"), *FAST_TRAIN],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    warning_lines = [x for x in res.stderr.splitlines() if "warning:" in x.lower() or "Warning" in x]
    assert warning_lines and all(x.startswith("delusive: warning: ") for x in warning_lines), res.stderr
    assert ".py:" not in res.stderr and "UserWarning" not in res.stderr
