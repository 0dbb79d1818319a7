"""What a report must say beside its numbers: which cells trained and which collapsed to a constant
predictor, what evaluation produced each number (the recorded evaluation spec, verbatim), how precise an
accuracy from n test images is (a 95% Wilson interval), and the run's configuration as resolved from the
records themselves (never a preset's description, which ``--set`` overrides may have made wrong).

Collapse: large-ε adversarial training with a high learning rate can sit on the trivial plateau of a constant
predictor (training loss ln K, accuracy 1/K). Such a cell measures the optimiser, not the defense, so reports
leave it out of every mean, say how many cells the mean covers and list the collapsed ones. The training
loop's monitor records ``collapsed`` / ``collapse_epoch`` in the metrics — a run also counts as collapsed when
it sat on the plateau for most of its epochs after the first, even if its last epoch crept out of the 2% band
(``plateau_reason``; applied here to records written before the pipeline applied it); older records lack them and are
judged from their history (final-epoch training loss within 2% of ln K *and* final-epoch test accuracy within
5 points of chance: adversarial training's loss can sit near ln K while the model already classifies clean
images well above chance, which is slow training, not a constant predictor). Natural accuracy at chance alone is
*not* taken as a collapse when the history has a training loss: a standard model that fits a delusive poison
(low training loss) and scores 10% on clean data is the attack succeeding, the paper's very finding."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]

LOSS_TOLERANCE = 0.02  # relative distance of the training loss to ln K that counts as the constant-predictor plateau
CHANCE_MARGIN = 0.01  # natural accuracy within 1 point of 1/K counts as chance (only without a training loss)
NEAR_CHANCE = 0.05  # with the loss at ln K: a final-epoch test accuracy this close to 1/K confirms the collapse
Z95 = 1.959963984540054
NOT_RECORDED = "evaluation spec not recorded"
_SUBSET_SEED = re.compile(r"(.*\bseed )(\d+)")


@dataclass(frozen=True)
class Collapse:
    """A collapsed cell: the epoch it collapsed at (None when unknown) and how that was decided."""

    epoch: int | None
    how: str


def num_classes(r: Record) -> int | None:
    """K of a record's dataset: recorded, or from the dataset catalog (None when it cannot be told)."""
    if isinstance(r.get("num_classes"), int) and r["num_classes"] > 1:
        return int(r["num_classes"])
    if isinstance(r.get("per_class_accuracy"), list) and len(r["per_class_accuracy"]) > 1:
        return len(r["per_class_accuracy"])
    return _catalog_classes(str(r.get("dataset")))


@functools.lru_cache(maxsize=64)
def _catalog_classes(dataset: str) -> int | None:
    """K from the catalog, once per dataset name (a ``folder:`` entry lists its directory)."""
    try:
        from delusive.data import dataset_info

        k = dataset_info(dataset).num_classes
    except (ValueError, OSError, TypeError, ImportError):
        return None
    return k if k > 1 else None


def _streak_start(history: list[Record], flagged: list[bool]) -> int | None:
    """The first epoch of the final run of flagged epochs."""
    start = None
    for row, f in zip(history, flagged, strict=True):
        start = (start if start is not None else row.get("epoch")) if f else None
    return None if start is None else int(start)


def collapse(r: Record) -> Collapse | None:
    """The record's collapse, or None when it trained. The recorded flag wins; otherwise the history's
    per-epoch flags, then its final-epoch training loss against ln K, then (no training loss recorded) natural
    accuracy at chance."""
    if "collapsed" in r and r["collapsed"] is not None:
        ep = r.get("collapse_epoch")
        if not r["collapsed"]:
            plateau = _plateau(r)
            return None if plateau is None else Collapse(None if ep is None else int(ep), plateau)
        return Collapse(None if ep is None else int(ep), "flagged by the training loop's monitor")
    hist = [h for h in r.get("history") or [] if isinstance(h, dict)]
    if hist and any("collapsed" in h for h in hist):
        flags = [bool(h.get("collapsed")) for h in hist]
        return Collapse(_streak_start(hist, flags), "flagged by the training loop's monitor") if flags[-1] else None
    k = num_classes(r)
    if k is None:
        return None
    ln_k = math.log(k)
    losses = [h for h in hist if isinstance(h.get("train_loss"), int | float)]
    if losses:
        flags = [abs(float(h["train_loss"]) - ln_k) <= LOSS_TOLERANCE * ln_k for h in losses]
        final = losses[-1].get("test_natural_accuracy", r.get("last_natural_accuracy", r.get("natural_accuracy")))
        if flags[-1] and (not isinstance(final, int | float) or float(final) <= 1 / k + NEAR_CHANCE):
            return Collapse(_streak_start(losses, flags), f"training loss within {LOSS_TOLERANCE:.0%} of ln {k}")
        return None
    acc = r.get("natural_accuracy")
    if isinstance(acc, int | float) and abs(float(acc) - 1 / k) <= CHANCE_MARGIN:
        return Collapse(None, f"natural accuracy at chance (1/{k})")
    return None


def _plateau(r: Record) -> str | None:
    """The plateau rule on a record the monitor did not flag: new records carry ``collapsed_epochs`` and
    ``epochs`` (the pipeline applies the rule itself); sweep records written before the rule existed carry the
    per-epoch flags in their history and the epochs in their config."""
    hist = [h for h in r.get("history") or [] if isinstance(h, dict) and "epoch" in h]
    flagged = r.get("collapsed_epochs")
    if not isinstance(flagged, list):
        if not any("collapsed" in h for h in hist):
            return None
        flagged = [h["epoch"] for h in hist if h.get("collapsed")]
    epochs = r.get("epochs")
    if not isinstance(epochs, int):
        train = (r.get("config") or {}).get("train") if isinstance(r.get("config"), dict) else None
        epochs = train.get("epochs") if isinstance(train, dict) else None
    if not isinstance(epochs, int):
        epochs = len(hist)
    from delusive.defenses.recipe import plateau_reason

    return plateau_reason([int(e) for e in flagged], epochs)


def collapse_text(r: Record) -> str:
    """``seed 1 (epoch 2)`` for a footnote."""
    c = collapse(r)
    where = f"epoch {c.epoch}" if c is not None and c.epoch is not None else "epoch not recorded"
    return f"seed {r.get('seed')} ({where})"


# --- precision of an accuracy from n images ---------------------------------------------------------------

def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` observed on ``n`` trials (95% by default)."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(p, 0.0), 1.0)
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def half_width(p: float, n: int) -> float:
    lo, hi = wilson(p, n)
    return (hi - lo) / 2


def eval_spec(r: Record) -> dict[str, Any] | None:
    spec = r.get("eval_spec")
    return spec if isinstance(spec, dict) else None


def sample_size(r: Record, metric: str) -> int | None:
    """How many test images an accuracy of ``metric`` was measured on (None when not recorded)."""
    spec = eval_spec(r) or {}
    if "robust" in metric:
        n = spec.get("n", r.get("robust_subset"))
    elif metric in ("natural_accuracy", "last_natural_accuracy", "best_natural_accuracy"):
        n = spec.get("natural_n", r.get("natural_n", r.get("n_test")))
    else:
        n = None
    return int(n) if isinstance(n, int | float) and n > 0 else None


def ci_text(p_percent: float, n: int) -> str:
    """``[39.8, 51.0]``: the 95% Wilson interval of an accuracy in percent."""
    lo, hi = wilson(p_percent / 100, n)
    return f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def ci_note(records: list[Record], metric: str, means: list[float]) -> str:
    """One sentence: from how many images each cell's accuracy comes and the half-width of its 95% Wilson
    interval at the table's accuracies (``means`` in percent); empty when n is not recorded."""
    ns = sorted({n for r in records if (n := sample_size(r, metric)) is not None})
    if not ns or not means:
        return ""
    widths = [100 * half_width(m / 100, n) for m in means for n in ns]
    lo, hi = min(widths), max(widths)
    span = f"±{hi:.1f}" if hi - lo < 0.05 else f"±{lo:.1f} to ±{hi:.1f}"
    what = "robust accuracy" if "robust" in metric else "accuracy"
    n_text = " or ".join(f"{n:,}" for n in ns)
    return (f"Each cell's {what} is measured on n = {n_text} test images: its 95% Wilson confidence interval is "
            f"{span} points at these accuracies (sampling error of one run, on top of the spread over seeds).")


# --- the evaluation spec, verbatim -------------------------------------------------------------------------

def describe_eval_spec(spec: dict[str, Any]) -> str:
    """The evaluation module's one-line rendering of a recorded evaluation spec."""
    from delusive.evaluation import describe_eval_spec as shared

    return str(shared(spec))


def eval_lines(records: list[Record]) -> list[str]:
    """Each distinct evaluation spec of ``records`` rendered once, in first-seen order; specs that differ only
    in the seed of their test subset (each run draws its own) are one line naming the seeds;
    "evaluation spec not recorded" for records without one."""
    order: list[str] = []
    seeds: dict[str, list[str]] = {}
    for r in records:
        spec = eval_spec(r)
        if not spec:
            key, seed = NOT_RECORDED, None
        else:
            spec = {k: v for k, v in spec.items() if k not in ("robust_ci95", "natural_ci95")}
            m = _SUBSET_SEED.fullmatch(str(spec.get("subset", "")))
            seed = m.group(2) if m else None
            if m:
                spec["subset"] = m.group(1) + "{seeds}"
            key = describe_eval_spec(spec)
        if key not in seeds:
            order.append(key)
            seeds[key] = []
        if seed is not None and seed not in seeds[key]:
            seeds[key].append(seed)
    return [key.replace("{seeds}", seeds[key][0] if len(seeds[key]) == 1
                        else "of each run: " + ", ".join(seeds[key])) for key in order]


def eval_note(records: list[Record]) -> str:
    lines = eval_lines(records)
    if not lines:
        return f"Evaluation: {NOT_RECORDED}."
    return "Evaluation: " + "; ".join(lines) + "."


# --- the run's configuration, from the records ---------------------------------------------------------------

def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def seeds_text(records: list[Record]) -> str:
    """``mean ± sample std over seeds 0, 1, 2`` or, for one seed, ``one seed (0): no spread over seeds``."""
    seeds = sorted({r["seed"] for r in records})
    if len(seeds) == 1:
        return f"one seed ({seeds[0]}): a smoke test, no spread over seeds"
    return f"mean ± sample std over seeds {', '.join(map(str, seeds))}"


def run_config(records: list[Record]) -> str:
    """The configuration the records were trained with (dataset, training-set size, models, epochs, batch,
    lr, poison budget, seeds), as resolved in their configs."""
    def values(get: Any) -> list[Any]:
        out: list[Any] = []
        for r in records:
            try:
                v = get(r)
            except (KeyError, TypeError):
                continue
            if v is not None and v not in out:
                out.append(v)
        return out

    def join(vs: list[Any]) -> str:
        return ", ".join(map(str, vs))

    parts = []
    if ds := values(lambda r: r["dataset"]):
        parts.append(join(ds))
    subsets = values(lambda r: r["config"]["poison"]["train_subset"])
    if subsets:
        parts.append(f"{join(subsets)}-image training subset")
    if sizes := values(lambda r: r["train_size"]):
        held = sorted(values(lambda r: r["val_size"] or None))
        span = str(sizes[0]) if len(sizes) == 1 else f"{min(sizes)}–{max(sizes)}"
        kept = "" if not held else f" ({held[0] if len(held) == 1 else f'{held[0]}–{held[-1]}'} held out for selection)"
        parts.append(f"{span} images trained on{kept}")
    if models := values(lambda r: r["model"]):
        parts.append(join(models))
    epochs = values(lambda r: r["config"]["train"]["epochs"])
    if epochs:
        parts.append(_plural(epochs[0], "epoch") if len(epochs) == 1 else f"{join(epochs)} epochs")
    if batch := values(lambda r: r["config"]["train"]["batch_size"]):
        parts.append(f"batch {join(batch)}")
    if lr := values(lambda r: r["config"]["train"]["lr"]):
        parts.append(f"lr {join(lr)}")
    budgets = values(lambda r: None if r["attack"] == "clean" else
                     f"{r['config']['poison']['budget']['norm']} ε={r['config']['poison']['budget']['eps']}")
    if budgets:
        parts.append(f"poison budget {join(budgets)}")
    seeds = sorted({r["seed"] for r in records if "seed" in r})
    parts.append(("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds)))
    return "; ".join(parts)


def spread_text(records: list[Record], kind: str = "error bars") -> str:
    """What the figure's spread shows: ``error bars: sample std over seeds 0, 1, 2``, or that one seed has
    none."""
    seeds = sorted({r["seed"] for r in records})
    if len(seeds) == 1:
        return f"One seed ({seeds[0]}): no {kind}; a smoke test, not a result"
    return f"{kind.capitalize()}: sample std over seeds {', '.join(map(str, seeds))}"


def figure_caption(records: list[Record], what: str, metrics: tuple[str, ...] = ("natural_accuracy",),
                   kind: str = "error bars") -> str:
    """A figure's caption for the Markdown (never drawn into the image): what it shows, the spread, the
    run's configuration, the evaluation spec verbatim, the 95% Wilson half-width, and the collapse marks."""
    parts = [what.rstrip(".") + ".", spread_text(records, kind) + ".",
             f"Configuration (from the records): {run_config(records)}.", eval_note(records)]
    for m in metrics:
        vals = [100 * float(r[m]) for r in records if isinstance(r.get(m), int | float) and collapse(r) is None]
        if ci := ci_note(records, m, vals):
            parts.append(ci)
    bad = [r for r in records if collapse(r) is not None]
    if bad:
        parts.append(f"† {len(bad)} of {len(records)} runs collapsed to a constant predictor and are left out of "
                     "the plotted means (marked †; hatched bars or × markers where every seed of a cell "
                     "collapsed); the tables list them.")
    return " ".join(parts)
