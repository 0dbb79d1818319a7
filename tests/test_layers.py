"""The import rules of DESIGN.md, enforced by parsing every module's imports."""

import ast
import shutil
from pathlib import Path

import pytest

import delusive

SRC = Path(delusive.__file__).parent
BASE = {"utils", "registry", "config"}
ALLOWED: dict[str, set[str]] = {
    "utils": {"utils"},
    "registry": set(),
    "config": {"utils"},
    "runtime": set(),
    "theory": {"theory"} | BASE,
    "data": {"data", "runtime"} | BASE,
    "threat": {"threat", "runtime"} | BASE,
    "perturb": {"perturb", "threat", "runtime"} | BASE,
    "models": {"models", "runtime"} | BASE,
    "attacks": {"attacks", "data", "threat", "perturb", "models", "runtime"} | BASE,
    "defenses": {"defenses", "data", "threat", "perturb", "models", "runtime"} | BASE,
    "evaluation": {"evaluation", "data", "threat", "perturb", "models", "runtime"} | BASE,
    "inspect": {"inspect", "evaluation", "data", "threat", "perturb", "models", "runtime"} | BASE,
    "experiments": {"experiments", "attacks", "defenses", "evaluation", "inspect", "data", "threat", "perturb",
                    "models", "runtime", "theory"} | BASE,
    # the public Python API (re-exported by delusive/__init__.py): a thin shell over the layers below
    "api": {"api", "experiments", "attacks", "defenses", "evaluation", "inspect", "data", "threat", "perturb",
            "models", "runtime"} | BASE,
    "__main__": {"cli"},  # ``python -m delusive``: the command line and nothing else
    "cli": {"cli", "experiments", "attacks", "defenses", "evaluation", "inspect", "data", "threat", "perturb",
            "models", "runtime", "theory"} | BASE,
}
FORBIDDEN_THIRD_PARTY = {"theory": {"torch"}, "utils": {"torch"}, "registry": {"torch"}, "config": {"torch"}}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; use absolute delusive.* imports")
    return names


def layer_problems(src: Path) -> list[str]:
    """Every import in the package tree at ``src`` that breaks the layer rules (empty when all is well)."""
    problems = []
    for path in sorted(src.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == src:
            continue
        layer = path.relative_to(src).parts[0].removesuffix(".py")
        if layer not in ALLOWED:
            problems.append(f"{path.relative_to(src)}: module outside the known layers ({layer}); add it to DESIGN.md")
            continue
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "delusive" and len(parts) > 1:
                if parts[1] not in ALLOWED[layer] and parts[1] != "__init__":
                    problems.append(f"{path.relative_to(src)} ({layer}) imports delusive.{parts[1]}")
            elif parts[0] in FORBIDDEN_THIRD_PARTY.get(layer, set()):
                problems.append(f"{path.relative_to(src)} ({layer}) imports {parts[0]}")
    return problems


def test_every_module_respects_the_layers():
    problems = layer_problems(SRC)
    assert not problems, "layer violations:\n" + "\n".join(problems)


def test_rule_checker_catches_a_violation(tmp_path):
    """The checker, run on a copy of the package (never on the installed one), flags exactly the violations
    planted in the copy: defenses -> attacks, a relative import, torch in theory, an unknown layer."""
    copy = tmp_path / "delusive"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    before = set(layer_problems(copy))
    assert before == set(layer_problems(SRC))  # control: the copy reads like the original
    (copy / "defenses" / "probe_violation.py").write_text("from delusive.attacks import something\n")
    (copy / "attacks" / "probe_violation.py").write_text("import delusive.defenses.loop\n")  # the other way
    (copy / "theory" / "probe_torch.py").write_text("import torch\n")
    (copy / "probe_layer.py").write_text("import os\n")
    added = set(layer_problems(copy)) - before
    assert added == {"defenses/probe_violation.py (defenses) imports delusive.attacks",
                     "attacks/probe_violation.py (attacks) imports delusive.defenses",
                     "theory/probe_torch.py (theory) imports torch",
                     "probe_layer.py: module outside the known layers (probe_layer); add it to DESIGN.md"}
    (copy / "evaluation" / "probe_relative.py").write_text("from . import metrics\n")
    with pytest.raises(AssertionError, match="relative import"):
        layer_problems(copy)
