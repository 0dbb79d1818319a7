"""The defense comparison report (issue 23): per-attack table with relative training time and a best-known-
defense row, robust accuracy only for the defenses that claim it, collapsed runs kept out of the means, a heat
map, and nothing at all for a sweep without defenses beyond AT."""

from __future__ import annotations

import csv
import io

import pytest

from delusive.experiments.report_defenses import (
    best_defenses,
    is_defense_study,
    plot_heatmap,
    table_csv,
    table_markdown,
    write_defense_report,
)

NAT = {("ST", "clean"): 0.90, ("ST", "P3"): 0.20, ("JPEG-10", "clean"): 0.85, ("JPEG-10", "P3"): 0.80,
       ("PGD-AT", "clean"): 0.80, ("PGD-AT", "P3"): 0.78}
NAME = {"ST": "standard", "JPEG-10": "jpeg", "PGD-AT": "pgd_at"}
TIME = {"ST": 10.0, "JPEG-10": 10.0, "PGD-AT": 60.0}


def _records(collapse: bool = False) -> list[dict]:
    out = []
    for d_i, label in enumerate(("ST", "JPEG-10", "PGD-AT")):
        for a_i, attack in enumerate(("clean", "P3")):
            for seed in (0, 1):
                threat = {"norm": "linf", "eps": 0.2} if label == "PGD-AT" else None
                out.append({
                    "dataset": "fashion-mnist", "model": "small-cnn", "attack": attack, "defense": label,
                    "defense_name": NAME[label], "seed": seed, "order": {"defense": d_i, "attack": a_i},
                    "natural_accuracy": NAT[(label, attack)] + 0.01 * seed, "robust_accuracy": 0.5,
                    "history": [{"epoch": 1, "epoch_time_s": TIME[label]}],
                    "transform_time_s": 2.0 if label == "JPEG-10" else 0.0,
                    "config": {"defense": {"name": NAME[label], **({"threat": threat} if threat else {})}},
                    **({"collapsed": True} if collapse and label == "PGD-AT" and attack == "P3" and seed == 1 else {}),
                })
    return out


def test_table_has_means_relative_times_and_the_best_defense():
    md = table_markdown(_records())
    assert "| ST | 90.50 ± 0.71 | 20.50 ± 0.71 | 20.50 | 1.00× |" in md
    assert "| JPEG-10 | 85.50 ± 0.71 | 80.50 ± 0.71 | 80.50 | 1.20× |" in md  # (10 + 2 s transform) / 10 s
    assert "| PGD-AT | 80.50 ± 0.71 | 78.50 ± 0.71 | 78.50 | 6.00× |" in md
    assert "| **best known defense** | **ST** (90.50) | **JPEG-10** (80.50) |" in md
    robust = md.split("robust accuracy")[1]
    assert "| PGD-AT |" in robust and "| JPEG-10 |" not in robust and "| ST |" not in robust


def test_best_defense_ties_go_to_the_cheaper_defense():
    recs = _records()
    for r in recs:
        if r["attack"] == "P3" and r["defense"] in ("JPEG-10", "PGD-AT"):
            r["natural_accuracy"] = 0.7
    assert best_defenses(recs)["P3"][0] == "JPEG-10"


def test_collapsed_runs_are_marked_and_left_out_of_the_mean():
    md = table_markdown(_records(collapse=True))
    assert "| PGD-AT | 80.50 ± 0.71 | 78.00 †1 |" in md and "†1 n runs collapsed" not in md
    assert "† n: n runs collapsed" in md


def test_a_collapse_in_the_selected_epochs_history_counts_too():
    recs = _records()
    r = next(r for r in recs if r["defense"] == "PGD-AT" and r["attack"] == "P3" and r["seed"] == 1)
    r["selected_epoch"] = 1
    r["history"] = [{"epoch": 1, "epoch_time_s": 60.0, "collapsed": True}]
    assert "| PGD-AT | 80.50 ± 0.71 | 78.00 †1 |" in table_markdown(recs)


def test_the_heat_map_marks_a_cell_whose_mean_lost_seeds():
    def texts(recs):
        fig = plot_heatmap(recs)
        out = [t.get_text() for t in fig.axes[0].texts]
        fig.clf()
        return out
    assert "78 †1" in texts(_records(collapse=True))  # PGD-AT on P3: one seed left out
    assert not any("†" in t for t in texts(_records()))  # control: nothing collapsed, nothing marked


def test_csv_lists_robust_rows_only_for_robust_defenses():
    rows = list(csv.DictReader(io.StringIO(table_csv(_records()))))
    robust = {r["defense"] for r in rows if r["metric"] == "robust_accuracy"}
    assert robust == {"PGD-AT"}
    assert any(r["defense"] == "JPEG-10" and r["train_time_vs_st"] == "1.2000" for r in rows)


def test_written_only_for_a_defense_study(tmp_path):
    assert not is_defense_study([r for r in _records() if r["defense"] != "JPEG-10"])
    assert write_defense_report([r for r in _records() if r["defense"] != "JPEG-10"], tmp_path) == {}
    paths = write_defense_report(_records(), tmp_path, "t")
    assert paths["defenses_figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "best known defense" in paths["defenses_md"].read_text()


@pytest.mark.parametrize("name", ["ueraser", "mixup", "jpeg+pgd_at", "bit_depth"])
def test_any_defense_beyond_at_makes_a_defense_study(name):
    assert is_defense_study([{"defense_name": name}])


def test_the_preset_expands_and_a_tiny_sweep_writes_the_comparison(tmp_path):
    from delusive.experiments.report import write_report
    from delusive.experiments.runner import run_sweep
    from delusive.experiments.spec import expand, load_preset, parse_spec

    cells = expand(load_preset("defenses-fmnist"))
    assert len(cells) == 7 * 11 * 3 and len({c.cell_id for c in cells}) == len(cells)
    jpeg_at = next(c for c in cells if c.defense.label == "JPEG+PGD-AT")
    assert jpeg_at.config["defense"]["transforms"] == [{"name": "jpeg", "params": {"quality": 10}}]
    spec = parse_spec({
        "name": "tiny", "datasets": ["synthetic"], "train_subset": 120, "attacks": ["clean"],
        "attack_budget": {"norm": "linf", "eps": "0.2"}, "models": ["mlp"], "seeds": [0],
        "defenses": [{"name": "standard", "label": "ST"}, {"name": "bit_depth", "label": "BDR"},
                     {"name": "jpeg+pgd_at", "label": "JPEG+AT", "norm": "linf", "eps": "0.2",
                      "params": {"steps": 1}}],
        "train": {"epochs": 1}, "eval": {"steps": 1, "robust_subset": 10, "attack": "pgd", "val_size": 20}})
    records = run_sweep(spec, tmp_path / "run")
    assert {r["defense"] for r in records} == {"ST", "BDR", "JPEG+AT"}
    assert all(r["transform_time_s"] >= 0 for r in records)
    paths = write_report(records, tmp_path / "run" / "report")
    md = paths["defenses_md"].read_text()
    assert "| JPEG+AT |" in md and "best known defense" in md and "robust accuracy" in md
