"""Experiments: spec validation, a two-cell smoke sweep producing the table, reruns executing no cell,
a killed sweep resuming to the same table, and mean ± std cells from hand-written records."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from delusive.experiments.report import aggregate, format_cell, table_markdown, write_report
from delusive.experiments.runner import run_sweep
from delusive.experiments.spec import SpecError, expand, load_preset, parse_spec, preset_names

SMOKE = {
    "name": "smoke",
    "datasets": ["synthetic"],
    "train_subset": 300,
    "attacks": ["clean", "P5"],
    "attack_budget": {"norm": "linf", "eps": "0.1"},
    "defenses": [{"name": "standard", "label": "ST"}],
    "models": ["small-cnn"],
    "train": {"epochs": 2, "batch_size": 64},
    "eval": {"steps": 2, "robust_subset": 50},
    "seeds": [0],
}


def test_spec_validation_errors():
    with pytest.raises(SpecError, match="unknown key\\(s\\) epochz"):
        parse_spec({**SMOKE, "epochz": 3})
    with pytest.raises(SpecError, match="missing required key 'attacks'"):
        parse_spec({k: v for k, v in SMOKE.items() if k != "attacks"})
    with pytest.raises(SpecError, match="unknown attack 'P7'"):
        parse_spec({**SMOKE, "attacks": ["P7"]})
    with pytest.raises(SpecError, match="unknown defense 'madry'"):
        parse_spec({**SMOKE, "defenses": ["madry"]})
    with pytest.raises(SpecError, match="norm: expected linf or l2"):
        parse_spec({**SMOKE, "attack_budget": {"norm": "l1", "eps": 1}})
    with pytest.raises(SpecError, match="train: unknown key\\(s\\) lr_decay"):
        parse_spec({**SMOKE, "train": {"lr_decay": 0.1}})
    with pytest.raises(SpecError, match="give both norm and eps"):
        parse_spec({**SMOKE, "defenses": [{"name": "pgd_at", "norm": "linf"}]})


def test_budget_is_part_of_every_cell_identity():
    a = expand(parse_spec(SMOKE))
    b = expand(parse_spec({**SMOKE, "attack_budget": {"norm": "linf", "eps": "0.2"}}))
    assert {c.cell_id for c in a}.isdisjoint({c.cell_id for c in b})
    assert len(a) == 2


def test_a_sweep_grows_seed_by_seed_into_the_same_cells():
    """``--set seeds=[0]`` then the full seed list reuses seed 0's cells (docs/experiments.md)."""
    one = load_preset("table2-fmnist", ["seeds=[0]"])
    full = load_preset("table2-fmnist")
    ids_one, ids_full = {c.cell_id for c in expand(one)}, {c.cell_id for c in expand(full)}
    assert len(ids_one) == 49 and len(ids_full) == 147 and ids_one < ids_full  # 7 attacks (L2C too) x 7 defenses


def test_shipped_presets_are_valid():
    assert {"demo", "paper-fmnist", "paper-fmnist-l2", "paper-cifar10"} <= set(preset_names())
    for name in preset_names():
        assert expand(load_preset(name))


def test_smoke_sweep_table_and_rerun_runs_nothing(tmp_path, capsys):
    spec = parse_spec(SMOKE)
    records = run_sweep(spec, tmp_path / "run")
    assert len(records) == 2 and {r["attack"] for r in records} == {"clean", "P5"}
    for r in records:
        assert 0 <= r["natural_accuracy"] <= 1 and 0 <= r["robust_accuracy"] <= 1
        assert r["config"]["poison"]["budget"] == {"norm": "linf", "eps": "0.1"}
    paths = write_report(records, tmp_path / "run" / "report")
    md = paths["table_md"].read_text()
    assert "| ST |" in md and "clean" in md and "P5" in md
    assert paths["figure"].stat().st_size > 0
    capsys.readouterr()
    again = run_sweep(spec, tmp_path / "run")
    assert "2 already finished, 0 to run" in capsys.readouterr().err
    assert [r["cell_id"] for r in again] == [r["cell_id"] for r in records]


def test_killed_sweep_resumes_to_the_same_table(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({**SMOKE, "train": {"epochs": 6, "batch_size": 32}}))
    env = {**os.environ, "DELUSIVE_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "delusive.cli.main", "sweep", str(spec_path)]
    ref = subprocess.run(cmd + ["--out", str(tmp_path / "ref")], env=env, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    proc = subprocess.Popen(cmd + ["--out", str(tmp_path / "run")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "run").glob("cells/*/checkpoint.pt")):
        time.sleep(0.05)
    had_checkpoint = bool(list((tmp_path / "run").glob("cells/*/checkpoint.pt")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert had_checkpoint, "no epoch checkpoint existed before the kill: the resume path was not exercised"
    assert not list((tmp_path / "run").glob("cells/*/result.json")) or len(
        list((tmp_path / "run").glob("cells/*/result.json"))) < 2, "the sweep finished before it was killed"
    again = subprocess.run(cmd + ["--out", str(tmp_path / "run")], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    # accuracies identical; the timing tables (train time, cost of the attacks) legitimately differ
    table = lambda d: (d / "report" / "table.md").read_text().split("train time")[0]  # noqa: E731
    assert table(tmp_path / "run") == table(tmp_path / "ref")
    assert "natural accuracy" in table(tmp_path / "run").lower()


def _rec(defense, attack, seed, acc, rob=0.5):
    return {"defense": defense, "attack": attack, "seed": seed, "natural_accuracy": acc, "robust_accuracy": rob,
            "best_natural_accuracy": acc, "train_time_s": 10.0, "history": [], "robust_subset": 100}


def test_report_mean_std_cells_from_hand_written_records():
    records = [_rec("ST", "clean", 0, 0.90), _rec("ST", "clean", 1, 0.92), _rec("ST", "clean", 2, 0.94),
               _rec("ST", "P1", 0, 0.30), _rec("AT", "P1", 0, 0.80), _rec("AT", "P1", 1, 0.84)]
    stats = aggregate(records, "natural_accuracy")
    assert stats[("ST", "clean")]["mean"] == pytest.approx(92.0)
    assert stats[("ST", "clean")]["std"] == pytest.approx(2.0)  # sample std of 90, 92, 94
    assert format_cell(stats[("ST", "clean")]) == "92.00 ± 2.00"
    assert format_cell(stats[("ST", "P1")]) == "30.00"
    md = table_markdown(records)
    assert "| ST | 92.00 ± 2.00 | 30.00 | 10 |" in md
    assert "| AT | — | 82.00 ± 2.83 | 10 |" in md
    assert "mean" not in md.splitlines()[0]  # one poisoned column: no summary column


def test_report_mean_column_averages_poisoned_cells_only():
    records = [_rec("ST", "clean", 0, 0.90), _rec("ST", "P1", 0, 0.30), _rec("ST", "P2", 0, 0.50),
               _rec("ST", "P2", 1, 0.70), _rec("AT", "P1", 0, 0.80)]
    md = table_markdown(records)
    assert "| training | clean | P1 | P2 | mean of P1, P2 | train time / run (s) |" in md  # named exactly
    assert "| ST | 90.00 | 30.00 | 60.00 ± 14.14 | 45.00 | 10 |" in md  # (30 + 60) / 2, clean excluded
    assert "| AT | — | 80.00 | — | — | 10 |" in md  # a missing cell leaves the mean undefined
    assert "\nAccuracy in %" in md
    assert "\nRobust accuracy (under the attack named above) in %" in table_markdown(records, "robust_accuracy")


def test_report_train_time_is_the_training_loop_from_the_history():
    old_style = dict(_rec("ST", "clean", 0, 0.9), train_time_s=50.0,  # written when it still included eval
                     history=[{"epoch": 1, "epoch_time_s": 3.0}, {"epoch": 2, "epoch_time_s": 4.0}])
    assert "| ST | 90.00 | 7 |" in table_markdown([old_style])
    assert "| ST | 90.00 | 10 |" in table_markdown([_rec("ST", "clean", 0, 0.9)])  # no history: the field


def test_report_orders_rows_by_spec_and_baselines_on_standard(tmp_path):
    recs = [dict(_rec("PGD-AT", "clean", 0, 0.8), order={"defense": 1, "attack": 0}, defense_name="pgd_at",
                 dataset="d", model="m"),
            dict(_rec("ST", "clean", 0, 0.9), order={"defense": 0, "attack": 0}, defense_name="standard",
                 dataset="d", model="m"),
            dict(_rec("ST", "P1", 0, 0.3), order={"defense": 0, "attack": 1}, defense_name="standard",
                 dataset="d", model="m")]
    md = table_markdown(recs)
    assert md.index("| ST |") < md.index("| PGD-AT |")


def test_duplicate_seeds_are_an_error():
    with pytest.raises(ValueError, match="mix configurations"):
        aggregate([_rec("ST", "P1", 0, 0.3), _rec("ST", "P1", 0, 0.4)], "natural_accuracy")


def test_resolved_defaults_are_part_of_the_cell_identity(monkeypatch):
    a = {c.cell_id for c in expand(parse_spec(SMOKE))}
    import dataclasses

    import delusive.experiments.pipeline as pipeline_mod

    patched = dataclasses.make_dataclass("EvalPlan", [("restarts", int, dataclasses.field(default=99))],
                                         bases=(pipeline_mod.EvalPlan,), frozen=True)
    monkeypatch.setattr(pipeline_mod, "EvalPlan", patched)  # a changed package default ...
    b = {c.cell_id for c in expand(parse_spec(SMOKE))}  # ... changes every cell id
    assert a.isdisjoint(b)
    cell = expand(parse_spec(SMOKE))[0]
    assert cell.config["train"]["lr"] == 0.05 and cell.config["eval"]["restarts"] == 99
    assert cell.config["eval"]["attack"] == "apgd"  # APGD-CE + APGD-T by default; presets choose autoattack


def test_spec_rejects_defense_without_budget_before_running():
    with pytest.raises(SpecError, match="needs a threat model"):
        parse_spec({**SMOKE, "defenses": [{"name": "pgd_at"}]})
    with pytest.raises(SpecError, match="steps must be an integer"):
        parse_spec({**SMOKE, "defenses": [{"name": "pgd_at", "norm": "linf", "eps": 0.1,
                                            "params": {"steps": 7.5}}]})


def test_paper_cifar10_preset_smoke_on_fixture_cifar_files(tmp_path):
    import pickle

    import numpy as np

    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (8, 3072)).astype(np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, 8)], b"batch_label": b"x"}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    from delusive.experiments.spec import load_preset

    spec = load_preset("paper-cifar10", [f"data_root={tmp_path}", "models=[small-cnn]", "seeds=[0]",
                                         "attacks=[clean, P3, P5]", "train.epochs=1", "crafting.arch=small-cnn",
                                         "crafting.epochs=1", "attack_params={P3: {iterations: 2}}",
                                         "eval={steps: 1, restarts: 1, robust_subset: 4, val_size: 0}"])
    records = run_sweep(spec, tmp_path / "run")
    assert len(records) == 6 and {r["attack"] for r in records} == {"clean", "P3", "P5"}
    assert all(r["config"]["poison"]["budget"] == {"norm": "l2", "eps": "0.5"} for r in records)
    assert records[0]["config"]["train"]["crop_padding"] == 4 and records[0]["config"]["train"]["hflip"]
