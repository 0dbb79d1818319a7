"""Reports: one colour and one order per attack and defense in every figure, legends outside the axes, the
study layouts (Figures 5, 6, 8, 9, Tables 1 and 3, partial poisoning) chosen from the axes the records carry,
and mean ± std tables computed from synthetic records."""

import csv
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from delusive.experiments.report import plot_bars, plot_curves, table_markdown, write_report  # noqa: E402
from delusive.experiments.report_studies import layouts, plot_lines, plot_ssl, plot_victims, study_tables  # noqa: E402

ATTACKS = ["clean", "P1", "P2", "P3", "P4", "P5"]
DEFENSES = {"ST": "standard", "PGD-AT": "pgd_at"}


def rec(defense, attack, seed, acc, **extra):
    return {"dataset": "fashion-mnist", "model": "small-cnn", "defense": defense, "defense_name": DEFENSES[defense],
            "attack": attack, "seed": seed, "natural_accuracy": acc, "robust_accuracy": acc / 2,
            "last_natural_accuracy": acc, "best_natural_accuracy": acc, "train_time_s": 5.0, "val_size": 500,
            "selection": "val_natural_accuracy" if defense == "ST" else "val_robust_accuracy", "selected_epoch": 2,
            "robust_attack": {"attack": "apgd-ce", "threat": {"norm": "linf", "eps_text": "0.2"}, "steps": 10,
                              "restarts": 1, "subset": {"size": 100}},
            "history": [{"epoch": e, "test_natural_accuracy": acc - 0.1 / e, "epoch_time_s": 1.0} for e in (1, 2)],
            "poison": {"attack": attack, "payload_sha256": f"{attack}-{seed}"}, **extra}


def sweep(**axes):
    """A full grid of ST / PGD-AT × clean, P1-P5 × seeds 0, 1 (× one axis's values), accuracies distinct."""
    out = []
    (name, values), = axes.items() if axes else [(None, [None])]
    for d in DEFENSES:
        for i, a in enumerate(ATTACKS):
            for s in (0, 1):
                for j, v in enumerate(values):
                    extra = {} if name is None else {name: v}
                    out.append(rec(d, a, s, 0.3 + 0.05 * i + 0.01 * s + 0.02 * j, **extra))
    return out


def line_colours(ax):
    return {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines() if not
            line.get_label().startswith("_")}


def test_an_attack_has_one_colour_across_figures_and_attacks_differ():
    curves = plot_curves(sweep())
    budget = plot_lines(sweep(defender_eps=[0.0, 0.1, 0.2]), "defender_eps", ("natural_accuracy",), per_defense=True)
    in_curves = line_colours(curves.axes[0])
    in_budget = line_colours(budget.axes[0])
    assert set(in_curves) == set(in_budget) == set(ATTACKS)
    for a in ATTACKS:
        assert in_curves[a] == in_budget[a]
    assert len(set(in_curves.values())) == len(ATTACKS)  # control: P2 and P5 are not both blue
    # seeds of one attack share the attack's colour inside a panel (the old curves.png cycled per line)
    p2 = [to_hex(line.get_color()) for line in curves.axes[0].get_lines() if line.get_label().endswith("P2")]
    assert len(p2) == 2 and len(set(p2)) == 1
    plt.close("all")


def test_a_defense_has_one_colour_in_figure4_bars_and_figure8_panels():
    bars = plot_bars(sweep())
    victims = plot_victims(sweep() + [dict(r, model="mlp") for r in sweep()])

    def bar_colours(ax):
        return {c.get_label(): to_hex(c.patches[0].get_facecolor()[:3]) for c in ax.containers
                if isinstance(c, BarContainer)}

    first = bar_colours(bars.axes[0])
    assert set(first) == {"ST", "PGD-AT"} and first["ST"] != first["PGD-AT"]
    for ax in victims.axes:
        assert bar_colours(ax) == first
    plt.close("all")


def _figures():
    two_models = sweep() + [dict(r, model="mlp") for r in sweep()]
    ssl = [dict(r, probe_accuracy=r["natural_accuracy"] - 0.1) for r in sweep()]
    return {"bars": plot_bars(sweep()), "curves": plot_curves(sweep()),
            "figure5": plot_lines(sweep(defender_eps=[0.0, 0.2]), "defender_eps", ("natural_accuracy",), True),
            "figure6": plot_lines(sweep(extra_clean=[0, 2000]), "extra_clean",
                                  ("natural_accuracy", "robust_accuracy"), False),
            "figure8": plot_victims(two_models), "figure9": plot_ssl(ssl)}


def _legend(fig):
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    return legends[0]


def test_legends_sit_outside_every_axes():
    for name, fig in _figures().items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = _legend(fig).get_window_extent(renderer)
        data_axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
        assert data_axes, name
        for ax in data_axes:
            assert ax.get_legend() is None, f"{name}: a legend inside a panel"
            assert not box.overlaps(ax.get_window_extent(renderer)), f"{name}: legend overlaps an axes"
    plt.close("all")


def test_a_grid_puts_its_legend_in_the_empty_cell_and_a_full_row_to_the_right():
    five = plot_victims([dict(r, model=m) for m in ("a", "b", "c", "d", "e") for r in sweep()])
    slot = [ax for ax in five.axes if ax.get_legend() is not None]
    assert len(slot) == 1 and not slot[0].axison and not five.legends
    two = plot_victims(sweep() + [dict(r, model="mlp") for r in sweep()])
    assert len(two.legends) == 1 and all(ax.get_legend() is None for ax in two.axes)
    plt.close("all")


def test_figure6_tells_defenses_apart_by_line_style_and_keeps_attack_colours():
    fig = plot_lines(sweep(extra_clean=[0, 2000, 5000]), "extra_clean", ("natural_accuracy", "robust_accuracy"), False)
    lines = {line.get_label(): line for line in fig.axes[1].get_lines()}
    assert lines["P3, ST"].get_linestyle() != lines["P3, PGD-AT"].get_linestyle()
    assert to_hex(lines["P3, ST"].get_color()) == to_hex(lines["P3, PGD-AT"].get_color())
    assert fig.axes[1].get_title().startswith("adversarial")
    plt.close("all")


CASES = [("figure5", {"defender_eps": 0.1}), ("figure6", {"extra_clean": 2000}),
         ("partial", {"poison_fraction": 0.5}), ("table3", {"split_accuracy": {"test-randomized": 0.5}}),
         ("figure9", {"probe_accuracy": 0.4}),
         ("table1", {"poison": {"crafting_train_time_s": 3.0, "generate_time_s": 1.0, "payload_sha256": "x"}})]


@pytest.mark.parametrize(("study", "extra"), CASES)
def test_each_layout_is_chosen_only_when_its_axis_is_present(study, extra, tmp_path):
    plain = sweep()
    assert layouts(plain) == []
    with_axis = [dict(r, **extra) for r in plain]
    if study == "figure5":  # a budget axis is a study only when it varies: one defender eps is no Figure 5
        assert layouts(with_axis) == []
        with_axis = with_axis + [dict(r, defender_eps=0.2, seed=r["seed"] + 100) for r in plain]
    assert layouts(with_axis) == [study]
    paths = write_report(with_axis, tmp_path / "with")
    assert {f"{study}_md", f"{study}_csv"} <= set(paths) and paths[f"{study}_md"].read_text().count("|") > 10
    assert (study in paths) == (study not in ("table3", "table1"))  # the two tables have no figure
    for key in ("table_md", "table_csv", "figure", "curves"):
        assert paths[key].stat().st_size > 0
    bare = write_report(plain, tmp_path / "without")
    assert set(bare) == {"table_md", "table_csv", "figure", "curves"}
    assert not (tmp_path / "without" / f"{study}.md").exists()


def test_figure8_layout_needs_two_victim_models():
    assert layouts(sweep() + [dict(r, model="mlp") for r in sweep()]) == ["figure8"]
    assert layouts([dict(r, model="mlp") for r in sweep()]) == []


def test_figure5_table_mean_std_by_hand_and_fixed_order():
    rs = [rec("PGD-AT", "P5", s, acc, defender_eps=0.1) for s, acc in enumerate((0.60, 0.70, 0.80))]
    rs += [rec("PGD-AT", "clean", 0, 0.9, defender_eps=0.1), rec("PGD-AT", "P1", 0, 0.5, defender_eps=0.0),
           rec("PGD-AT", "P1", 1, 0.55, defender_eps=0.0)]
    md = study_tables(rs, "figure5")[0].markdown()
    lines = md.splitlines()
    assert lines[2] == "| attack | ε=0 | ε=0.1 |"
    assert lines[4] == "| clean | — | 90.00 |"  # fixed order: clean, P1, P5 though the records start at P5
    assert lines[5] == "| P1 | 52.50 ± 3.54 | — |"  # sample std of 50, 55 = 3.5355
    assert lines[6] == "| P5 | — | 70.00 ± 10.00 |"  # sample std of 60, 70, 80
    assert "best val_robust_accuracy (PGD-AT defender ε=0, PGD-AT defender ε=0.1)" in md and "500 held-out" in md


def test_main_table_keeps_axis_values_apart_and_orders_defenses_and_attacks():
    rs = list(reversed(sweep(poison_fraction=[0.5, 1.0])))
    md = table_markdown(rs)
    head = md.splitlines()[0]
    assert head.startswith("| training | clean | P1 | P2 | P3 | P4 | P5 |")
    rows = [line.split(" | ")[0].lstrip("| ") for line in md.splitlines()[2:6]]
    assert rows == ["ST poisoned 0.5", "ST poisoned 1", "PGD-AT poisoned 0.5", "PGD-AT poisoned 1"]
    # ST on clean, fraction 1.0, seeds 0 / 1: 0.32, 0.33 -> 32.50 ± 0.71
    assert "| ST poisoned 1 | 32.50 ± 0.71 |" in md


def test_table1_times_one_sample_per_artifact_and_st_accuracy():
    rs = []
    for s, (train, gen) in enumerate(((10.0, 1.0), (20.0, 2.0), (30.0, 6.0))):  # totals 11, 22, 36
        for d in DEFENSES:  # ST and AT share the artifact: its time counts once
            rs.append(rec(d, "P1", s, 0.4 + 0.1 * s if d == "ST" else 0.8, poison={
                "payload_sha256": f"p1-{s}", "crafting_train_time_s": train, "generate_time_s": gen}))
        rs.append(rec("ST", "P5", s, 0.6, poison={"payload_sha256": f"p5-{s}", "crafting_train_time_s": 0.0,
                                                   "generate_time_s": 0.5}))
    md = study_tables(rs, "table1")[0].markdown()
    assert "| attack | train (s) | generate (s) | total (s) | ST natural accuracy (%) |" in md
    assert "| P1 | 20.00 ± 10.00 | 3.00 ± 2.65 | 23.00 ± 12.53 | 50.00 ± 10.00 |" in md
    assert "| P5 | 0.00 ± 0.00 | 0.50 ± 0.00 | 0.50 ± 0.00 | 60.00 ± 0.00 |" in md
    assert md.index("| P1 |") < md.index("| P5 |")


def test_table3_and_figure9_columns_and_csv(tmp_path):
    rs = [dict(rec(d, "clean", s, 0.9 - 0.1 * s, split_accuracy={"test-randomized": 0.5 + 0.2 * s}), model=m)
          for d in DEFENSES for m in ("vgg16", "resnet50") for s in (0, 1)]
    md = study_tables(rs, "table3")[0].markdown()
    assert "| training | model | test | test-randomized |" in md
    assert "| ST | vgg16 | 85.00 ± 7.07 | 60.00 ± 14.14 |" in md
    assert md.index("| ST | vgg16") < md.index("| ST | resnet50") < md.index("| PGD-AT | vgg16")
    paths = write_report(rs, tmp_path)
    assert set(layouts(rs)) == {"figure8", "table3"}
    rows = list(csv.DictReader(io.StringIO(paths["table3_csv"].read_text())))
    rand = [r for r in rows if r["column"] == "test-randomized" and r["row"] == "PGD-AT | resnet50"]
    assert len(rand) == 1 and float(rand[0]["mean"]) == pytest.approx(60.0) and rand[0]["n_seeds"] == "2"
    ssl = [dict(r, probe_accuracy=0.3 + 0.1 * r["seed"]) for r in sweep()]
    tables = study_tables(ssl, "figure9")
    assert "Downstream" in tables[1].title and "| ST | 35.00 ± 7.07 |" in tables[1].markdown()


def test_report_names_the_epoch_and_the_robust_attack(tmp_path):
    md = write_report(sweep(extra_clean=[0, 2000]), tmp_path)["table_md"].read_text()
    assert "apgd-ce, linf ε=0.2" in md and "epoch selected on 500 held-out training images" in md
    assert "Figure 6: Adversarial test accuracy" in md


@pytest.mark.parametrize(("study", "extra"), CASES[2:])
def test_every_markdown_table_row_has_as_many_columns_as_its_header(study, extra, tmp_path):
    rows = [dict(r, **extra) for r in sweep()] + [dict(r, model="mlp", **extra) for r in sweep()]
    for table in study_tables(rows, study):
        lines = [ln for ln in table.markdown().splitlines() if ln.startswith("|")]
        assert len({ln.count("|") for ln in lines}) == 1, lines[:3]


@pytest.mark.parametrize("kind", ["lines", "victims", "ssl"])
def test_a_long_title_wraps_instead_of_widening_the_saved_figure(kind, tmp_path):
    from delusive.experiments.report_style import save

    long = "Figure 6 on Fashion-MNIST: " + "a preset's long description, " * 12

    def draw(title):
        if kind == "lines":
            return plot_lines(sweep(extra_clean=[0, 5000]), "extra_clean", ("natural_accuracy",), False, title)
        if kind == "victims":
            rs = sweep() + [dict(r, model="mlp") for r in sweep()]
            return plot_victims(rs, title)
        return plot_ssl(sweep(probe_accuracy=[0.5]), title)

    widths = {}
    for name, title in (("short", "short"), ("long", long)):
        path = save(draw(title), tmp_path / f"{name}.png")
        widths[name] = int.from_bytes(path.read_bytes()[16:20], "big")   # PNG IHDR width
    plt.close("all")
    assert widths["long"] <= widths["short"] * 1.05, widths


def test_figure8_table_rows_follow_the_spec_model_order_like_its_panels():
    spec_order = ["small-cnn", "small-resnet", "mlp"]
    rs = [dict(r, model=m, order={"attack": ATTACKS.index(r["attack"]), "defense": list(DEFENSES).index(r["defense"]),
                                  "dataset": 0, "model": i}) for i, m in enumerate(spec_order) for r in sweep()]
    rs = list(reversed(rs))   # records arrive in any order (finish order, directory listing)
    table, = study_tables(rs, "figure8")
    victims = list(dict.fromkeys(line.split(" | ")[0].strip("| ") for line in table.markdown().splitlines()
                                 if line.startswith("| ") and " | ST | " in line))
    assert victims == spec_order
    fig = plot_victims(rs)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [f"victim {m}" for m in spec_order]
    plt.close("all")


def test_report_tables_follow_the_spec_order_whatever_order_records_arrive_in(tmp_path):
    spec_order = ["small-cnn", "small-resnet", "mlp"]
    rs = [dict(r, model=m, order={"attack": ATTACKS.index(r["attack"]), "defense": list(DEFENSES).index(r["defense"]),
                                  "dataset": 0, "model": i}) for i, m in enumerate(spec_order) for r in sweep()]
    write_report(list(reversed(rs)), tmp_path)
    text = (tmp_path / "table.md").read_text()
    first_seen = sorted(spec_order, key=lambda m: text.index(f"fashion-mnist, {m}**"))
    assert first_seen == spec_order
