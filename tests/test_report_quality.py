"""Reports say what they measured and never hide a failed run: collapsed cells are marked and left out of
every mean (with how many seeds trained), captions carry the evaluation spec verbatim and a 95% Wilson
interval, one-seed tables show no spread, figures are grids with shared axes, and every combination of the
study axes a spec accepts is reported (the combined-axes sweep runs end to end on synthetic data)."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from delusive.experiments.report import aggregate, mean_header, plot_bars, table_markdown, write_report  # noqa: E402
from delusive.experiments.report_quality import (  # noqa: E402
    collapse,
    describe_eval_spec,
    eval_note,
    run_config,
    wilson,
)
from delusive.experiments.report_studies import combos, plot_lines, plot_victims, study_tables  # noqa: E402
from delusive.experiments.spec import SpecError, parse_spec  # noqa: E402

LN10 = math.log(10)
EVAL_SPEC = {"attack": "apgd", "components": ["apgd-ce", "apgd-t"], "norm": "linf", "eps": "0.2", "steps": 20,
             "restarts": 1, "step_size": "APGD adaptive", "queries": None, "n": 300,
             "subset": "seeded class-stratified, seed 0", "precision": "fp32", "robust_ci95": [0.3, 0.4],
             "natural_ci95": [0.7, 0.8], "natural_n": 10000}


def rec(defense, attack, seed, acc, loss=0.5, **extra):
    """A fashion-mnist (K = 10) record; ``loss`` is every epoch's training loss."""
    return {"dataset": "fashion-mnist", "model": "small-cnn", "defense": defense,
            "defense_name": "standard" if defense == "ST" else "pgd_at", "attack": attack, "seed": seed,
            "natural_accuracy": acc, "robust_accuracy": acc / 2, "last_natural_accuracy": acc,
            "train_time_s": 1.0, "selection": "last",
            "history": [{"epoch": e, "train_loss": loss, "test_natural_accuracy": acc, "epoch_time_s": 1.0}
                        for e in (1, 2)], **extra}


def three_seeds(flag_seed=None):
    """PGD-AT on P1 over seeds 0-2 (74, 73, 10%); ``flag_seed`` carries the monitor's collapse flag."""
    out = []
    for s, acc in enumerate((0.74, 0.73, 0.10)):
        extra = {"collapsed": s == flag_seed, "collapse_epoch": 1 if s == flag_seed else None}
        out.append(rec("PGD-AT", "P1", s, acc, **(extra if flag_seed is not None else {})))
    return out


def test_a_flagged_collapse_is_left_out_of_the_mean_with_its_count_and_listed():
    stats = aggregate(three_seeds(flag_seed=2), "natural_accuracy")[("PGD-AT", "P1")]
    assert (stats["n"], stats["total"]) == (2, 3) and stats["mean"] == pytest.approx(73.5)
    md = table_markdown(three_seeds(flag_seed=2))
    assert "| PGD-AT | 73.50 ± 0.71 (2/3)† |" in md
    assert "PGD-AT on P1: seed 2 (epoch 1) 10.00" in md and "left out of the means" in md
    # live control: the same numbers without the flag (and a history that trained) give the plain mean of three
    plain = table_markdown([dict(r, collapsed=False) for r in three_seeds(flag_seed=2)])
    assert "| PGD-AT | 52.33 ± 36.67 |" in plain and "†" not in plain


def test_old_records_are_judged_from_their_history():
    stalled = rec("PGD-AT", "P1", 2, 0.10, loss=LN10 * 1.01)  # loss on the ln K plateau, accuracy at chance
    assert collapse(stalled) is not None and collapse(stalled).epoch == 1
    # a standard model that fits a delusive poison (low loss) and scores 10% on clean data: the attack worked
    assert collapse(rec("ST", "P4", 0, 0.10, loss=0.05)) is None
    # AT's adversarial loss near ln K while clean accuracy is far above chance: slow, not a constant predictor
    assert collapse(rec("PGD-AT", "P1", 0, 0.45, loss=LN10 * 0.99)) is None
    # the per-epoch flags of the monitor: the final streak's first epoch
    hist = [{"epoch": 1, "collapsed": True}, {"epoch": 2, "collapsed": False}, {"epoch": 3, "collapsed": True},
            {"epoch": 4, "collapsed": True}]
    assert collapse(dict(rec("PGD-AT", "P1", 0, 0.1), history=hist)).epoch == 3
    # an explicit False from the monitor wins over the heuristic
    assert collapse(dict(stalled, collapsed=False)) is None
    rows = [*three_seeds()[:2], stalled]
    assert "(2/3)†" in table_markdown(rows) and "seed 2 (epoch 1)" in table_markdown(rows)


def test_a_run_that_sat_on_the_plateau_most_of_its_epochs_is_collapsed_though_its_last_epoch_was_not():
    # Figure 5's P2 seed: flagged on epochs 1-3 of 4, the last crept 2.6% below ln 10, 32.9% against 71-74%
    rows = three_seeds(flag_seed=-1)
    rows[2] = dict(rows[2], natural_accuracy=0.329, collapsed=False, collapsed_epochs=[1, 2, 3], epochs=4)
    assert collapse(rows[2]) is not None and "2 of its 3 epochs after the first" in collapse(rows[2]).how
    assert "| PGD-AT | 73.50 ± 0.71 (2/3)† |" in table_markdown(rows)
    # control: one flagged epoch (every ramped AT run's first can be) is a run that trained
    trained = [*rows[:2], dict(rows[2], collapsed_epochs=[1])]
    assert collapse(trained[2]) is None and "†" not in table_markdown(trained)


def test_a_cell_where_every_seed_collapsed_shows_no_mean():
    rows = [dict(r, collapsed=True, collapse_epoch=2) for r in three_seeds()]
    md = table_markdown(rows)
    assert "| PGD-AT | collapsed (0/3)† |" in md
    assert "seed 0 (epoch 2) 74.00, seed 1 (epoch 2) 73.00, seed 2 (epoch 2) 10.00" in md


def test_specs_that_differ_only_in_their_subset_seed_are_one_caption_line():
    rows = [dict(r, eval_spec=dict(EVAL_SPEC, subset=f"seeded class-stratified, seed {r['seed']}"))
            for r in three_seeds()]
    note = eval_note(rows)
    assert note.count("apgd-ce") == 1 and "(seeded class-stratified, seed of each run: 0, 1, 2)" in note
    # control: a spec that differs in something else stays its own line
    rows[2] = dict(rows[2], eval_spec=dict(rows[2]["eval_spec"], steps=100))
    note = eval_note(rows)
    assert note.count("apgd-ce") == 2 and "seed of each run: 0, 1)" in note and "seed 2)" in note


def test_wilson_interval_by_hand():
    lo, hi = wilson(0.5, 100)
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    lo, hi = wilson(0.0, 300)  # never below 0, and not degenerate at 0 like the normal approximation
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.01264, abs=1e-4)


def test_captions_print_the_eval_spec_verbatim_and_the_confidence_interval():
    rows = [dict(r, eval_spec=EVAL_SPEC) for r in three_seeds()]
    # captions print the spec without its per-cell intervals (those differ from cell to cell; the caption
    # gives the Wilson half-width at the table's accuracies instead)
    text = describe_eval_spec({k: v for k, v in EVAL_SPEC.items() if not k.endswith("_ci95")})
    assert "apgd" in text and "apgd-ce" in text and "n=300" in text and "fp32" in text
    md = table_markdown(rows, "robust_accuracy")
    assert text in md
    # n = 300 robust images at 37% (the mean of 37, 36.5, 5): Wilson half-width about 5.4 points
    assert "n = 300 test images" in md and "95% Wilson" in md
    nat = table_markdown(rows)
    assert "n = 10,000 test images" in nat
    old = table_markdown(three_seeds())
    assert "evaluation spec not recorded" in old and eval_note(three_seeds()).endswith("not recorded.")


def test_figure_captions_in_the_markdown_carry_the_eval_spec_and_the_interval(tmp_path):
    rows = [dict(r, eval_spec=EVAL_SPEC, defender_eps=eps, seed=r["seed"] + 10 * i)
            for i, eps in enumerate((0.0, 0.1)) for r in three_seeds(flag_seed=2)]
    paths = write_report(rows, tmp_path)
    spec_text = describe_eval_spec({k: v for k, v in EVAL_SPEC.items() if not k.endswith("_ci95")})
    md = paths["table_md"].read_text()
    figures = md.split("## Figures", 1)[1]
    for png in ("figure.png", "curves.png", "figure5.png"):
        caption = next(line for line in figures.splitlines() if line.startswith(f"*{png}*"))
        assert spec_text in caption and "95% Wilson" in caption, png
        assert "collapsed to a constant predictor" in caption, png
    assert spec_text in paths["figure5_md"].read_text().split("![Figure 5]", 1)[1]


def test_one_seed_has_no_spread_and_robust_cells_show_their_interval():
    one = [dict(rec(d, a, 0, 0.5), eval_spec=EVAL_SPEC) for d in ("ST", "PGD-AT") for a in ("clean", "P1", "P5")]
    md = table_markdown(one)
    assert "±" not in md.split("\n\n")[0]  # no spread in the table body
    assert "seeds [0]" not in md and "one seed (0)" in md
    rob = table_markdown(one, "robust_accuracy")
    # 75 of 300 images: Wilson [20.44, 30.19] (centre 0.2532, half-width 0.0488 by hand)
    assert "| ST | 25.00 [20.4, 30.2] |" in rob
    bars = plot_bars(one)
    assert all(c.errorbar is None for c in bars.axes[0].containers if isinstance(c, BarContainer))
    three = plot_bars(three_seeds() + [dict(r, seed=r["seed"] + 3) for r in three_seeds()])
    assert any(c.errorbar is not None for c in three.axes[0].containers if isinstance(c, BarContainer))
    plt.close("all")


def test_mean_column_is_named_for_what_it_averages():
    assert mean_header(["P1", "P2", "P3", "P4", "P5"]) == "mean P1–P5"
    assert mean_header(["P1", "P5"]) == "mean of P1, P5"
    assert mean_header(["L2C", "P1", "P2", "P3", "P4", "P5"]) == "mean L2C, P1–P5"
    rows = [rec("ST", a, 0, 0.5) for a in ("clean", "P1", "P5")]
    assert "| mean of P1, P5 |" in table_markdown(rows)


def test_collapsed_bars_are_hatched_and_marked():
    rows = [dict(r, collapsed=True) for r in three_seeds()] + [rec("ST", "P1", s, 0.3) for s in range(3)]
    fig = plot_bars(rows)
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_height() == pytest.approx(100 * (0.74 + 0.73 + 0.10) / 3)
    assert any(t.get_text() == "†" for t in ax.texts)
    assert not [p for p in plot_bars(rows[3:]).axes[0].patches if p.get_hatch()]  # control: none when none collapsed
    plt.close("all")


def _combined():
    """ST (no defender ε) and AT at ε 0.1 / 0.3 × extra_clean 0 / 100 × poison_fraction 0.5 / 1, two seeds."""
    out = []
    for d, eps in (("ST", None), ("AT", 0.1), ("AT", 0.3)):
        for extra in (0, 100):
            for frac in (0.5, 1.0):
                for s in (0, 1):
                    acc = 0.5 + 0.1 * frac + 0.001 * extra + (0.05 if eps else 0) + 0.01 * s
                    r = rec(d, "P1", s, acc, extra_clean=extra, poison_fraction=frac)
                    if eps is not None:
                        r["defender_eps"] = eps
                    out.append(r)
    return out


def test_every_combination_of_study_axes_reports(tmp_path):
    rows = _combined()
    paths = write_report(rows, tmp_path)
    assert {"figure5", "figure6", "partial"} <= set(paths)
    f5 = study_tables(rows, "figure5")
    assert len(f5) == 4  # one per (extra_clean, poison_fraction)
    t = next(t for t in f5 if t.group.endswith("+100 clean poisoned 0.5"))
    # AT at ε 0.3, +100 clean, fraction 0.5, seeds 0/1: 0.5 + 0.05 + 0.1 + 0.05 + {0, 0.01}
    assert "| P1 | 70.50 ± 0.71 | 70.50 ± 0.71 |" in t.markdown()
    # the baseline without a defender ε joins every group of that axis (Figure 6 compares ST with AT)
    f6 = study_tables(rows, "figure6")
    assert len(f6) == 2 * 2 * 2 and all("ST, P1" in x.markdown() for x in f6)
    assert [c for c, _ in combos(rows, "extra_clean")] == ["defender ε=0.1 poisoned 0.5", "defender ε=0.1 poisoned 1",
                                                           "defender ε=0.3 poisoned 0.5", "defender ε=0.3 poisoned 1"]
    md = paths["table_md"].read_text()
    assert "| AT defender ε=0.3 +100 clean poisoned 0.5 |" in md
    plt.close("all")


def test_figures_are_grids_with_shared_axes():
    rows = _combined()
    fig = plot_lines(rows, "defender_eps", ("natural_accuracy",), per_defense=True)
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.axison]  # the legend's cell has no axis
    assert len(visible) == 4  # AT × 4 combinations of the other two axes
    shapes = {ax.get_subplotspec().get_geometry()[:2] for ax in visible}
    assert shapes == {(2, 3)}  # rows of at most three, not a 1 × 4 strip
    assert all(ax.get_shared_y_axes().joined(visible[0], ax) for ax in visible)
    victims = [dict(r, model=m) for m in ("a", "b", "c", "d", "e") for r in three_seeds()]
    fig8 = plot_victims(victims)
    vis = [ax for ax in fig8.axes if ax.get_visible() and ax.axison]
    assert len(vis) == 5 and {ax.get_subplotspec().get_geometry()[:2] for ax in vis} == {(2, 3)}
    assert [bool(ax.get_ylabel()) for ax in vis] == [True, False, False, True, False]  # first column only
    plt.close("all")


def test_run_config_comes_from_the_records_not_a_description():
    rows = [dict(r, config={"poison": {"train_subset": 600, "budget": {"norm": "linf", "eps": "0.2"}},
                            "train": {"epochs": 1, "batch_size": 128, "lr": 0.05}}, train_size=540, val_size=60)
            for r in three_seeds()[:1]]
    text = run_config(rows)
    assert "600-image training subset" in text and "1 epoch;" in text and "seed 0" in text
    assert "linf ε=0.2" in text and "540 images trained on (60 held out" in text


SMOKE = {"name": "combined", "datasets": ["synthetic"], "train_subset": 100, "attacks": ["P5"],
         "attack_budget": {"norm": "linf", "eps": "0.1"},
         "defenses": [{"name": "pgd_at", "label": "AT", "norm": "linf", "eps": [0, 0.1], "params": {"steps": 1}}],
         "extra_clean": [0, 20], "poison_fraction": [0.5, 1.0], "train": {"epochs": 1, "batch_size": 50},
         "eval": {"attack": "pgd", "steps": 1, "robust_subset": 20}, "seeds": [0]}


def test_a_sweep_combining_defender_eps_poison_fraction_and_extra_clean_runs_and_reports(tmp_path):
    from delusive.experiments.runner import run_sweep

    records = run_sweep(parse_spec(SMOKE), tmp_path / "run")
    assert len(records) == 2 * 2 * 2
    paths = write_report(records, tmp_path / "run" / "report")
    assert {"figure5", "figure6", "partial"} <= set(paths)
    md = paths["table_md"].read_text()
    assert md.count("**Figure 5:") == 4 and md.count("**Partial poisoning:") == 4
    assert "Configuration (from the records): synthetic; 100-image training subset" in md


def test_a_spec_listing_one_training_run_twice_is_refused_before_any_work():
    spec = dict(SMOKE, defenses=[{"name": "standard", "label": "ST"}, *SMOKE["defenses"]])
    with pytest.raises(SpecError, match="ST and AT at ε=0 are the same training run"):
        parse_spec(spec)
    parse_spec(dict(SMOKE, defenses=[{"name": "standard", "label": "ST"},
                                     {**SMOKE["defenses"][0], "eps": [0.1, 0.2]}]))  # control: distinct runs pass


def _docs_spec():
    from pathlib import Path

    import yaml

    text = (Path(__file__).parents[1] / "docs" / "experiments.md").read_text(encoding="utf-8")
    return yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])


def test_the_docs_example_spec_is_accepted():
    spec = parse_spec(_docs_spec(), "docs/experiments.md")
    assert spec.extra_clean and spec.poison_fraction and len({d.eps for d in spec.defenses}) > 2


SHRINK = {"datasets": ["synthetic"], "train_subset": 200, "attacks": ["clean", "P1", "P5"], "seeds": [0],
          "extra_clean": [0, 50], "attack_params": {"P1": {"steps": 2}}}


@pytest.mark.slow
def test_the_docs_example_spec_runs_and_reports_shrunk(tmp_path):
    from delusive.experiments.runner import run_sweep
    from delusive.experiments.spec import apply_overrides

    data = apply_overrides({**_docs_spec(), **SHRINK}, [
        "train.epochs=1", "eval.robust_subset=30", "eval.val_size=20", "eval.attack=pgd", "eval.steps=1",
        "eval.epoch_subset=30", "crafting.epochs=1", "crafting.val_size=20"])
    records = run_sweep(parse_spec(data), tmp_path / "run")
    paths = write_report(records, tmp_path / "run" / "report")
    assert {"figure5", "figure6", "partial", "table1_md"} <= set(paths)
    assert "Configuration (from the records): synthetic; 200-image training subset" in paths["table_md"].read_text()
