"""The battery's arithmetic: AUROC against a brute-force count, and the table it writes."""

from __future__ import annotations

import numpy as np
import pytest

from delusive.experiments.inspect_battery import BATTERIES, auroc, battery_markdown


def _brute(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_the_pairwise_count_with_ties(seed):
    g = np.random.default_rng(seed)
    scores = g.integers(0, 6, 300).astype(float)  # many ties
    positive = g.random(300) < 0.3
    assert auroc(scores, positive) == pytest.approx(_brute(scores, positive))
    assert auroc(np.arange(10.0), np.arange(10) >= 5) == 1.0
    assert np.isnan(auroc(np.arange(4.0), np.zeros(4, bool)))


def test_the_preset_covers_the_issue_grid_and_every_registered_attack_by_default():
    spec = BATTERIES["inspect-fmnist"]
    assert spec["fractions"] == [0.1, 0.2, 0.5, 1.0] and spec["attacks"] is None and len(spec["budgets"]) >= 2
    assert set(spec["clean"]) == {"fashion-mnist", "mnist", "mnist-fashion", "folder"}


def test_markdown_table_rates():
    clean = [{"set": "a", "verdict": "clean", "score": 0.4, "signals": {"shortcut": 0.6}, "wall_s": 1.0},
             {"set": "b", "verdict": "suspect", "score": 1.4, "signals": {"shortcut": 2.0}, "wall_s": 1.0}]
    rows = [{"set": f"P1 {f}", "attack": "P1", "fraction": f, "verdict": v, "score": 1.0, "auroc": a,
             "signals": {"shortcut": 1.0}, "wall_s": 1.0, "craft_s": 2.0}
            for f, v, a in [(0.1, "clean", 0.9), (0.1, "suspect", 0.7), (1.0, "suspect", None)]]
    md = battery_markdown({"battery": "t", "spec": {"attacks": ["P1"]}, "false_positive_rate": 0.5,
                           "clean": clean, "poisoned": rows, "wall_time_s": 3})
    assert "False-positive rate on the clean sets: **50%** (1 of 2 flagged)" in md
    assert "| P1 | 50% / 0.80 | 100% |" in md
