"""Spec axes beyond dataset × attack × defense × model × seed (Figures 5, 6, 8 and partial poisoning): each
value is part of a cell's identity, an artifact is crafted once for every cell downstream of it, extra clean
examples are disjoint from the poisoned ones and byte-identical to their source, and poison_fraction 0 / 1
give the clean set / the full artifact."""

import numpy as np
import pytest

from delusive.data import load_dataset
from delusive.experiments import runner as runner_mod
from delusive.experiments.poisoning import clean_pool, mix_poison, subset_indices, with_extra_clean
from delusive.experiments.spec import SpecError, expand, parse_spec

BASE = {"name": "axes", "datasets": ["synthetic"], "train_subset": 300, "attacks": ["P5"],
        "attack_budget": {"norm": "linf", "eps": "8/255"}, "defenses": ["standard"],
        "train": {"epochs": 1}, "eval": {"attack": "pgd", "steps": 1, "robust_subset": 20, "val_size": 0}}


@pytest.mark.parametrize("axis,values", [("extra_clean", [0, 50]), ("poison_fraction", [0.0, 0.5]),
                                         ("models", ["small-cnn", "small-cnn-bn"])])
def test_an_axis_value_changes_the_cell_id(axis, values):
    cells = expand(parse_spec({**BASE, axis: values}))
    assert len(cells) == 2 and cells[0].cell_id != cells[1].cell_id
    assert cells[0].poison_config == cells[1].poison_config  # ... but not the artifact's identity


def test_defender_budget_list_expands_and_eps_zero_is_standard_training():
    spec = parse_spec({**BASE, "defenses": [{"name": "pgd_at", "label": "AT", "norm": "linf",
                                             "eps": [0, "4/255", "8/255"], "params": {"steps": 2}}]})
    cells = expand(spec)
    assert [c.defense.defender_eps for c in cells] == [0.0, 4 / 255, 8 / 255]
    assert cells[0].config["defense"]["name"] == "standard" and cells[1].config["defense"]["name"] == "pgd_at"
    assert len({c.cell_id for c in cells}) == 3
    with pytest.raises(SpecError, match="poison_fraction"):
        parse_spec({**BASE, "poison_fraction": [1.5]})
    with pytest.raises(SpecError, match="extra_clean"):
        parse_spec({**BASE, "extra_clean": [-1]})


def test_poison_fraction_zero_is_the_clean_set_and_one_the_artifact():
    clean = load_dataset("synthetic", "train").subset(np.arange(200))
    poisoned = type(clean)(np.clip(clean.float_x() + 0.03, 0, 1).astype(np.float32), clean.y, clean.num_classes)
    assert mix_poison(clean, poisoned, 0.0, 0) is clean
    assert mix_poison(clean, poisoned, 1.0, 0) is poisoned
    half = mix_poison(clean, poisoned, 0.5, 0)
    changed = (np.abs(half.float_x() - clean.float_x()).reshape(200, -1).max(1) > 0).sum()
    assert changed == 100 and np.array_equal(half.y, clean.y)
    other_seed = mix_poison(clean, poisoned, 0.5, 1)
    assert not np.array_equal(half.x, other_seed.x)  # chosen per seed


def test_extra_clean_examples_are_disjoint_from_the_poisoned_ones_and_clean():
    full = load_dataset("synthetic", "train")
    subset = {"size": 300, "seed": 4}
    pool = clean_pool("synthetic", None, subset)
    kept = set(subset_indices(len(full), 300, 4).tolist())
    assert len(pool) == len(full) - 300
    train = full.subset(sorted(kept))
    grown = with_extra_clean(train, pool, 50, 4)
    assert len(grown) == 350 and np.array_equal(grown.x[:300], train.x)
    rows = {full.x[i].tobytes(): i for i in range(len(full))}
    sources = [rows.get(grown.x[300 + j].tobytes()) for j in range(50)]
    assert all(s is not None for s in sources)  # byte-identical to a source image ...
    assert kept.isdisjoint(sources)  # ... that is not one of the poisoned training examples
    with pytest.raises(ValueError, match="clean pool holds only"):
        with_extra_clean(train, pool, len(pool) + 1, 0)
    with pytest.raises(ValueError, match="set train_subset"):
        clean_pool("synthetic", None, None)


def test_cells_that_share_an_artifact_craft_it_once(tmp_path, monkeypatch):
    calls = []
    real = runner_mod.make_poison

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(runner_mod, "make_poison", counting)
    spec = parse_spec({**BASE, "poison_fraction": [0.5, 1.0], "models": ["small-cnn", "mlp"]})
    records = runner_mod.run_sweep(spec, tmp_path / "run")
    assert len(records) == 4 and calls == ["P5"]
    assert sorted(r["poison_fraction"] for r in records) == [0.5, 0.5, 1.0, 1.0]


def test_derived_datasets_take_their_base_datasets_attack_defaults():
    from delusive.attacks.defaults import base_dataset, default_attack_params

    assert base_dataset("rot:fashion-mnist") == "fashion-mnist" and base_dataset("mnist-fashion:2,4") == "mnist-fashion"
    assert base_dataset("folder:/data/x:y") == "folder:/data/x:y"
    cpu = default_attack_params("P1", "fashion-mnist")
    assert default_attack_params("P1", "rot:fashion-mnist") == cpu != default_attack_params("P1", "rot:cifar10")
