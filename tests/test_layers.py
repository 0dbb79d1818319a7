"""The import rules of DESIGN.md, enforced by parsing every module's imports."""

import ast
from pathlib import Path

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
    "experiments": {"experiments", "attacks", "defenses", "evaluation", "data", "threat", "perturb", "models",
                    "runtime", "theory"} | BASE,
    "cli": {"cli", "experiments", "attacks", "defenses", "evaluation", "data", "threat", "perturb", "models",
            "runtime", "theory"} | BASE,
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


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def test_every_module_respects_the_layers():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == SRC:
            continue
        layer = _layer(path)
        assert layer in ALLOWED, f"{path}: module outside the known layers ({layer}); add it to DESIGN.md"
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "delusive" and len(parts) > 1:
                if parts[1] not in ALLOWED[layer] and parts[1] != "__init__":
                    problems.append(f"{path.relative_to(SRC)} ({layer}) imports delusive.{parts[1]}")
            elif parts[0] in FORBIDDEN_THIRD_PARTY.get(layer, set()):
                problems.append(f"{path.relative_to(SRC)} ({layer}) imports {parts[0]}")
    assert not problems, "layer violations:\n" + "\n".join(problems)


def test_attacks_and_defenses_never_import_each_other():
    assert "defenses" not in ALLOWED["attacks"] and "attacks" not in ALLOWED["defenses"]


def test_rule_checker_catches_a_violation(tmp_path, monkeypatch):
    bad = SRC / "defenses" / "_tmp_violation_probe.py"
    bad.write_text("from delusive.attacks import something\n")
    try:
        try:
            test_every_module_respects_the_layers()
        except AssertionError as e:
            assert "imports delusive.attacks" in str(e)
        else:
            raise AssertionError("the layer test did not catch defenses -> attacks")
    finally:
        bad.unlink()
