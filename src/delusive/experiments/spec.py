"""Experiment specs: YAML → a frozen, validated spec → cells (dataset × attack × defense × model × seed).

Unknown keys are errors (a typo must not silently fall back to a default). The attack budget is part of
every cell's identity (REFERENCE.md: the authors' scripts reused stale poisons across ε).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from delusive.data import dataset_info
from delusive.defenses.config import TrainConfig
from delusive.defenses.recipe import resolve_recipe
from delusive.utils import config_hash, parse_budget, parse_fraction
from delusive.utils.parse import check_seed
from delusive.utils.safefile import UnsafeFileError
from delusive.utils.safeyaml import load_yaml_file, load_yaml_text

TOP_KEYS = {"name", "description", "datasets", "data_root", "train_subset", "attacks", "attack_budget",
            "attack_params", "reference_schedule", "storage", "crafting", "defenses", "models", "train", "eval",
            "seeds", "device", "compile", "extra_clean", "poison_fraction", "resources", "deterministic",
            "craft_precision", "checkpoint_every", "checkpoint_minutes", "attack_budgets"}
DEFENSE_KEYS = {"name", "label", "norm", "eps", "params", "region"}
REGIONS = ("top", "bottom", "left", "right")
BUDGET_KEYS = {"norm", "eps"}
RESOURCE_KEYS = {"cpus_per_cell", "gpus_per_cell", "memory_gb_per_cell"}
CRAFTING_KEYS = {"arch", "epochs", "train", "val_size"}
TRAIN_KEYS = {"epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "milestones", "gamma",
              "crop_padding", "hflip", "precision", "eps_ramp", "lr_warmup"}
EVAL_KEYS = {"norm", "eps", "attack", "steps", "restarts", "robust_subset", "rel_step_size", "val_size", "select",
             "epoch_attack", "epoch_steps", "epoch_every", "epoch_subset", "splits", "probe", "queries"}


class SpecError(ValueError):
    """An invalid experiment spec; the message names the key and what is allowed."""


@dataclass(frozen=True)
class DefenseSpec:
    """One defense of a spec. A list of ε in the YAML expands into one DefenseSpec per ε (the defender-budget
    axis of Figure 5); ε = 0 is standard training. ``region`` restricts the defender's ball to one half of
    the image (Section 5.3's region threat model: e.g. ``top`` = the digit block of ``mnist-fashion``)."""

    name: str
    label: str
    norm: str | None = None
    eps: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    region: str | None = None

    @property
    def defender_eps(self) -> float | None:
        return None if self.eps is None else parse_fraction(self.eps, "eps")

    @property
    def objective_name(self) -> str:
        """ε = 0 trains on the unperturbed data: standard training, whatever the method (a composite defense
        keeps its training-set transforms: ``jpeg+pgd_at`` at ε = 0 is ``jpeg``)."""
        if self.defender_eps != 0:
            return self.name
        from delusive.defenses import with_objective

        return with_objective(self.name, "standard")

    @property
    def objective_params(self) -> dict[str, Any]:
        """The params the defense is built with: all of them, or at ε = 0 only its transforms' params."""
        if self.objective_name == self.name:
            return dict(self.params)
        from delusive.defenses import TRANSFORMS, split_defense
        from delusive.registry import hyperparameters

        heads = split_defense(self.name)[0]
        keys = {k for t in heads for k in hyperparameters(TRANSFORMS.get(t))} | {f"{t}." for t in heads}
        return {k: v for k, v in self.params.items() if k in keys or k.split(".", 1)[0] + "." in keys}


@dataclass(frozen=True)
class Spec:
    name: str
    datasets: tuple[str, ...]
    attacks: tuple[str, ...]
    attack_budget: dict[str, str]
    defenses: tuple[DefenseSpec, ...]
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    train: dict[str, Any]
    eval: dict[str, Any]
    crafting: dict[str, Any]
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference_schedule: bool = False
    storage: str = "auto"  # float32 for l2 budgets, uint8 rounded toward zero for linf
    train_subset: int | None = None
    data_root: str | None = None
    description: str = ""
    extra_clean: tuple[int, ...] = ()  # Figure 6: clean examples added from a disjoint pool (cell axis)
    poison_fraction: tuple[float, ...] = ()  # fraction of the training set that carries the perturbation (cell axis)
    device: str = "auto"  # where cells run: not part of a cell's identity, recorded in its result
    compile: bool = False
    resources: dict[str, float] = field(default_factory=dict)  # per Ray task; not part of a cell's identity
    deterministic: bool = False  # exact CUDA switches (docs/devices.md); recorded, not part of a cell's identity
    craft_precision: str = "fp32"  # autocast of P1-P4/L2C crafting; part of the poison's identity when not fp32
    checkpoint_every: int = 1  # epochs between training checkpoints (always at the end); not part of the identity
    checkpoint_minutes: float | None = None  # or once this many minutes have passed
    # per-attack budgets overriding attack_budget (AR and LSP are ℓ2 attacks beside ℓ∞ ones); OPS and CUDA always
    # take their fixed budgets (attacks/defaults.fixed_budget)
    attack_budgets: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep; ``config`` is everything that determines its result."""

    dataset: str
    attack: str
    defense: DefenseSpec
    model: str
    seed: int
    config: dict[str, Any]
    extra_clean: int | None = None
    poison_fraction: float | None = None

    @property
    def cell_id(self) -> str:
        return config_hash(self.config)

    @property
    def poison_config(self) -> dict[str, Any]:
        return self.config["poison"]


def _check_keys(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return obj


def _list(obj: Any, where: str) -> list[Any]:
    if isinstance(obj, str | int):
        return [obj]
    if not isinstance(obj, list) or not obj:
        raise SpecError(f"{where}: expected a non-empty list")
    return obj


def _budget(obj: Any, where: str) -> dict[str, str]:
    b = _check_keys(obj, BUDGET_KEYS, where)
    if "norm" not in b or "eps" not in b:
        raise SpecError(f"{where}: needs both norm and eps")
    if b["norm"] not in ("linf", "l2"):
        raise SpecError(f"{where}.norm: expected linf or l2, got {b['norm']!r}")
    try:
        parse_budget(b["norm"], b["eps"], f"{where}.eps")  # the CLI's check (finite, < 1e6, linf <= 1)
    except ValueError as e:
        raise SpecError(str(e)) from None
    return {"norm": str(b["norm"]), "eps": str(b["eps"])}


def parse_spec(data: dict[str, Any], source: str = "spec") -> Spec:
    """Validate a spec mapping (already parsed from YAML)."""
    from delusive.attacks import attack_names
    from delusive.defenses import defense_names, is_defense_name
    from delusive.models import classifier_names

    d = _check_keys(data, TOP_KEYS, source)
    for key in ("datasets", "attacks", "defenses", "attack_budget"):
        if key not in d:
            raise SpecError(f"{source}: missing required key {key!r}")
    attacks = [str(a) for a in _list(d["attacks"], f"{source}.attacks")]
    for a in attacks:
        if a not in attack_names():
            raise SpecError(f"{source}.attacks: unknown attack {a!r}; expected one of {', '.join(attack_names())}")
    defenses = []
    for i, raw in enumerate(_list(d["defenses"], f"{source}.defenses")):
        raw = {"name": raw} if isinstance(raw, str) else raw
        dd = _check_keys(raw, DEFENSE_KEYS, f"{source}.defenses[{i}]")
        if not is_defense_name(dd.get("name")):
            raise SpecError(f"{source}.defenses[{i}].name: unknown defense {dd.get('name')!r}; expected one of "
                            f"{', '.join(defense_names())}, or transforms then an objective joined by '+' "
                            "(jpeg+pgd_at)")
        if ("norm" in dd) != ("eps" in dd):
            raise SpecError(f"{source}.defenses[{i}]: give both norm and eps, or neither")
        region = dd.get("region")
        if region is not None and region not in REGIONS:
            raise SpecError(f"{source}.defenses[{i}].region: expected one of {', '.join(REGIONS)}, got {region!r}")
        if region is not None and "eps" not in dd:
            raise SpecError(f"{source}.defenses[{i}].region: needs the defense's norm and eps")
        eps_list = dd["eps"] if isinstance(dd.get("eps"), list) else [dd.get("eps")]
        if not eps_list:
            raise SpecError(f"{source}.defenses[{i}].eps: expected a number or a non-empty list")
        for eps in eps_list:
            if eps is not None:
                _budget({"norm": dd["norm"], "eps": eps}, f"{source}.defenses[{i}]")
            defenses.append(DefenseSpec(dd["name"], str(dd.get("label", dd["name"])), dd.get("norm"),
                                        None if eps is None else str(eps), dict(dd.get("params", {})), region))
    keys = [(x.label, x.eps) for x in defenses]
    if len(set(keys)) != len(keys):
        raise SpecError(f"{source}.defenses: labels must be unique (per eps), got {[x.label for x in defenses]}")
    models = [str(m) for m in _list(d.get("models", ["small-cnn"]), f"{source}.models")]
    for m in models:
        if m not in classifier_names():
            raise SpecError(f"{source}.models: unknown model {m!r}; expected one of {', '.join(classifier_names())}")
    seeds = _list(d.get("seeds", [0]), f"{source}.seeds")
    for s in seeds:
        try:
            check_seed(s, f"{source}.seeds")
        except ValueError as e:
            raise SpecError(str(e)) from None
    attack_params = _check_keys(d.get("attack_params", {}), set(attack_names()), f"{source}.attack_params")
    storage = d.get("storage", "auto")
    if storage not in ("auto", "uint8", "float32"):
        raise SpecError(f"{source}.storage: expected auto, uint8 or float32, got {storage!r}")
    subset = d.get("train_subset")
    if subset is not None and (not isinstance(subset, int) or subset < 1):
        raise SpecError(f"{source}.train_subset: expected a positive integer, got {subset!r}")
    ev = dict(_check_keys(d.get("eval", {}), EVAL_KEYS, f"{source}.eval"))
    if "norm" in ev or "eps" in ev:
        _budget({"norm": ev.get("norm"), "eps": ev.get("eps")}, f"{source}.eval")
    crafting = dict(_check_keys(d.get("crafting", {}), CRAFTING_KEYS, f"{source}.crafting"))
    if "train" in crafting:
        _check_keys(crafting["train"], TRAIN_KEYS, f"{source}.crafting.train")
    for key, low in (("epochs", 1), ("val_size", 0)):  # as --crafting-epochs (0 must not mean "the default")
        v = crafting.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise SpecError(f"{source}.crafting.{key}: must be an integer >= {low}, got {v!r}")
    extra_clean = [] if d.get("extra_clean") is None else _list(d["extra_clean"], f"{source}.extra_clean")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in extra_clean):
        raise SpecError(f"{source}.extra_clean: expected counts (integers >= 0), got {extra_clean}")
    fractions = [] if d.get("poison_fraction") is None else d["poison_fraction"]
    fractions = fractions if isinstance(fractions, list) else [fractions]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in fractions):
        raise SpecError(f"{source}.poison_fraction: expected fractions in [0, 1], got {fractions}")
    device = str(d.get("device", "auto"))
    resources = dict(_check_keys(d.get("resources", {}), RESOURCE_KEYS, f"{source}.resources"))
    for k, v in resources.items():
        if (isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1e9
                or (k == "cpus_per_cell" and v == 0)):
            raise SpecError(f"{source}.resources.{k}: expected a number >= 0 (cpus_per_cell > 0), got {v!r}")
    if not isinstance(d.get("compile", False), bool):
        raise SpecError(f"{source}.compile: expected true or false, got {d.get('compile')!r}")
    if not isinstance(d.get("deterministic", False), bool):
        raise SpecError(f"{source}.deterministic: expected true or false, got {d.get('deterministic')!r}")
    craft_precision = d.get("craft_precision", "fp32")
    if craft_precision not in ("fp32", "bf16", "auto"):
        raise SpecError(f"{source}.craft_precision: expected fp32, bf16 or auto, got {craft_precision!r}")
    ck_every, ck_min = d.get("checkpoint_every", 1), d.get("checkpoint_minutes")
    if isinstance(ck_every, bool) or not isinstance(ck_every, int) or ck_every < 1:
        raise SpecError(f"{source}.checkpoint_every: expected an integer >= 1 (epochs), got {ck_every!r}")
    if ck_min is not None and (isinstance(ck_min, bool) or not isinstance(ck_min, int | float) or not ck_min > 0):
        raise SpecError(f"{source}.checkpoint_minutes: expected a number > 0 or null, got {ck_min!r}")
    spec = Spec(
        name=str(d.get("name", Path(source).stem)),
        datasets=tuple(str(x) for x in _list(d["datasets"], f"{source}.datasets")),
        attacks=tuple(attacks),
        attack_budget=_budget(d["attack_budget"], f"{source}.attack_budget"),
        defenses=tuple(defenses),
        models=tuple(models),
        seeds=tuple(int(s) for s in seeds),
        train=dict(_check_keys(d.get("train", {}), TRAIN_KEYS, f"{source}.train")),
        eval=ev,
        crafting=crafting,
        attack_params={k: dict(v) for k, v in attack_params.items()},
        reference_schedule=bool(d.get("reference_schedule", False)),
        storage=storage,
        train_subset=subset,
        data_root=d.get("data_root"),
        description=str(d.get("description", "")),
        extra_clean=tuple(int(v) for v in extra_clean),
        poison_fraction=tuple(float(v) for v in fractions),
        device=device,
        compile=bool(d.get("compile", False)),
        resources={k: float(v) for k, v in resources.items()},
        deterministic=bool(d.get("deterministic", False)),
        craft_precision=str(craft_precision),
        checkpoint_every=int(ck_every),
        checkpoint_minutes=None if ck_min is None else float(ck_min),
        attack_budgets={str(a): _budget(b, f"{source}.attack_budgets.{a}") for a, b in
                        _check_keys(d.get("attack_budgets", {}), set(attack_names()),
                                    f"{source}.attack_budgets").items()},
    )
    _validate_components(spec, source)
    return spec


def _validate_components(spec: Spec, source: str) -> None:
    """Build every objective and training config now, so a bad value fails before anything is crafted."""
    from delusive.defenses import check_transforms, create_defense

    runs: dict[str, DefenseSpec] = {}
    for i, d in enumerate(spec.defenses):
        try:
            obj = create_defense(d.objective_name, d.norm if d.objective_name != "standard" else None,
                                 d.eps if d.objective_name != "standard" else None, **d.objective_params)
            for dataset in spec.datasets:  # e.g. grayscale on a 1-channel set, refused before anything runs
                shape = dataset_info(dataset).shape if _known(dataset) else (0, 0, 0)
                if shape[0]:
                    check_transforms(obj, shape)
        except (ValueError, TypeError) as e:
            raise SpecError(f"{source}.defenses[{i}] ({d.label}): {e}") from None
        # two entries that train the same run would share one cell and one of them vanish from the report
        same = runs.setdefault(config_hash({"defense": obj.describe(), "region": d.region}), d)
        if same is not d:
            raise SpecError(f"{source}.defenses: {_defense_text(same)} and {_defense_text(d)} are the same training "
                            "run (ε = 0 is standard training); list it once")
    for dataset in spec.datasets:
        try:
            dataset_info(dataset)
            train_config(spec, dataset, 0)
        except (ValueError, TypeError) as e:
            raise SpecError(f"{source}: {e}") from None
    try:
        plan = eval_plan(spec)
    except (ValueError, TypeError) as e:
        raise SpecError(f"{source}.{e}" if str(e).startswith("eval") else f"{source}.eval: {e}") from None
    from delusive.evaluation.fit import check_eval_attack

    for dataset in spec.datasets:  # an attack the dataset's class count cannot run: refused before training
        n = dataset_info(dataset).num_classes
        for option, attack in ((f"{source}.eval.attack", plan.attack), (f"{source}.eval.epoch_attack",
                                                                         plan.epoch_attack)):
            if n:  # 0: a folder dataset not read yet (its loader says what is wrong with it)
                try:
                    check_eval_attack(attack, n, option, dataset)
                except ValueError as e:
                    raise SpecError(str(e)) from None
    try:  # always: crafting.epochs alone must be checked too
        crafting_train_config(spec, 0)
    except (ValueError, TypeError) as e:
        raise SpecError(f"{source}.crafting{'.train' if spec.crafting.get('train') else ''}: {e}") from None
    from delusive.attacks import create_attack
    from delusive.attacks.defaults import default_attack_params

    for attack in spec.attacks:  # attack parameters are checked as --attack-param's are, before any crafting
        for dataset in spec.datasets:
            params = {**default_attack_params(attack, dataset, spec.reference_schedule),
                      **spec.attack_params.get(attack, {})}
            try:
                create_attack(attack, **params)
            except (ValueError, TypeError) as e:
                raise SpecError(f"{source}.attack_params.{attack}: {e}") from None


def _known(dataset: str) -> bool:
    try:
        dataset_info(dataset)
    except (ValueError, TypeError):
        return False  # reported below, with the dataset's own message
    return True


def _defense_text(d: DefenseSpec) -> str:
    return d.label if d.eps is None else f"{d.label} at ε={d.eps}"


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw spec mapping."""
    out = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise SpecError(f"--set: expected key=value, got {item!r}")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        node = out
        for k in keys[:-1]:
            if isinstance(node, list) and k.isdigit() and int(k) < len(node):
                node = node[int(k)]
            elif isinstance(node, dict):
                node = node.setdefault(k, {})
            else:
                raise SpecError(f"--set {item}: cannot descend into {k!r}")
            if isinstance(node, str):
                raise SpecError(f"--set {item}: {k} is a plain value, not a mapping or list")
        if isinstance(node, list):
            raise SpecError(f"--set {item}: give a list index, e.g. defenses.1.eps")
        try:
            node[keys[-1]] = load_yaml_text(raw, f"--set {item}")  # no aliases, as in a spec file
        except ValueError as e:
            raise SpecError(str(e).replace(": not valid YAML", ": value is not valid YAML", 1)) from None
    return out


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    p = Path(path)
    if not p.exists():
        raise SpecError(f"{p}: no such spec file")
    try:
        data = load_yaml_file(p)  # a regular file (a FIFO would hang a read) of bounded size, no aliases
    except UnsafeFileError:
        raise
    except ValueError as e:
        raise SpecError(str(e)) from None
    return parse_spec(apply_overrides(data, overrides), str(p))


PRESET_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str, overrides: list[str] | None = None) -> Spec:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise SpecError(f"--preset: unknown preset {name!r}; expected one of {', '.join(preset_names())}")
    return load_spec(path, overrides)


def train_config(spec: Spec, dataset: str, seed: int) -> TrainConfig:
    """The resolved training config of a cell: package defaults, the dataset's augmentation, the spec."""
    info = dataset_info(dataset)
    kw = dict(spec.train)
    if "milestones" in kw:
        kw["milestones"] = tuple(kw["milestones"])
    return replace(TrainConfig(seed=seed, crop_padding=info.crop_padding, hflip=info.hflip), **kw)


def _tuple_milestones(kw: dict[str, Any]) -> dict[str, Any]:
    kw = dict(kw)
    if "milestones" in kw:
        kw["milestones"] = tuple(kw["milestones"])
    return kw


def crafting_train_config(spec: Spec, seed: int) -> TrainConfig:
    """The crafting model's training config: package defaults, ``crafting.epochs``, then ``crafting.train``."""
    from delusive.experiments.crafting import crafting_config

    kw = _tuple_milestones(spec.crafting.get("train", {}))
    epochs = kw.pop("epochs", spec.crafting.get("epochs"))
    return crafting_config(seed, epochs, **kw)


def eval_plan(spec: Spec):  # type: ignore[no-untyped-def]
    """The resolved evaluation plan (:class:`~delusive.experiments.pipeline.EvalPlan`); the robust threat
    defaults to the attack budget."""
    from delusive.experiments.pipeline import EvalPlan

    ev = {"norm": spec.attack_budget["norm"], "eps": spec.attack_budget["eps"], **spec.eval}
    ev["eps"] = str(ev["eps"])
    return EvalPlan(**ev)


def eval_config(spec: Spec) -> dict[str, Any]:
    """The resolved evaluation config as a mapping (part of every cell's identity)."""
    return eval_plan(spec).to_dict()


def poison_budget(spec: Spec, attack: str) -> dict[str, str]:
    """The budget ``attack`` is crafted in: OPS's and CUDA's fixed one, else ``attack_budgets``, else
    ``attack_budget``."""
    from delusive.attacks.defaults import fixed_budget

    fixed = fixed_budget(attack)
    if fixed is not None:
        return {"norm": fixed[0], "eps": fixed[1]}
    return dict(spec.attack_budgets.get(attack, spec.attack_budget))


def expand(spec: Spec) -> list[Cell]:
    """All cells of a spec, in a stable order (dataset, attack, defense, model, seed).

    A cell's config is *resolved*: every default the run will use (training, objective, evaluation,
    crafting) is written out, so a changed package default changes the cell id instead of reusing a stale
    result (REFERENCE.md: the authors' scripts reused stale poisons).
    """
    from delusive.attacks.defaults import default_attack_params

    cells = []
    ev = eval_config(spec)
    extras: tuple[int | None, ...] = spec.extra_clean or (None,)
    fractions: tuple[float | None, ...] = spec.poison_fraction or (None,)
    for dataset, attack, defense, model, seed, extra, fraction in itertools.product(
            spec.datasets, spec.attacks, spec.defenses, spec.models, spec.seeds, extras, fractions):
        params = default_attack_params(attack, dataset, spec.reference_schedule)
        params.update(spec.attack_params.get(attack, {}))
        crafting = None
        if attack in ("P1", "P2", "P3", "P4", "TAP"):  # the attacks that take a (cached) crafting model
            crafting = {"arch": spec.crafting.get("arch", "small-cnn"),
                        "train": crafting_train_config(spec, seed).to_dict()}
            if spec.crafting.get("val_size"):
                crafting["val_size"] = int(spec.crafting["val_size"])
        poison = {"dataset": dataset, "attack": attack, "budget": poison_budget(spec, attack), "params": params,
                  "storage": spec.storage, "seed": seed, "train_subset": spec.train_subset, "crafting": crafting}
        if spec.craft_precision != "fp32" and attack in ("P1", "P2", "P3", "P4", "L2C"):
            poison["precision"] = spec.craft_precision  # enters the identity only when used
        objective = build_objective(defense)
        described = objective.describe()
        if defense.region is not None:
            described["region"] = defense.region
        config = {"poison": poison, "defense": described, "model": model,
                  "train": resolve_recipe(train_config(spec, dataset, seed), objective).to_dict(), "eval": ev,
                  "seed": seed}
        if extra is not None:  # axes enter the identity only when a spec uses them (older run ids stay valid)
            config["extra_clean"] = extra
        if fraction is not None:
            config["poison_fraction"] = fraction
        cells.append(Cell(dataset, attack, defense, model, seed, config, extra, fraction))
    return cells


def build_objective(defense: DefenseSpec):  # type: ignore[no-untyped-def]
    """The defense's objective (ε = 0: standard training); a ``region`` is applied by the runner, which knows
    the image shape."""
    from delusive.defenses import create_defense, create_objective

    if defense.objective_name == "standard":
        return create_objective("standard")
    return create_defense(defense.objective_name, defense.norm, defense.eps, **defense.objective_params)
