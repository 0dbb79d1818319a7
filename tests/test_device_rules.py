"""Every tensor and generator is created through ``delusive.runtime`` (DESIGN.md): a static check, like the
import-rule test, so a CPU-only generator or a CPU tensor cannot slip into a device path."""

import ast
from pathlib import Path

import delusive

SRC = Path(delusive.__file__).parent
#: torch constructors that place a tensor (or a generator) on a device chosen by their caller
FORBIDDEN = {"Generator", "rand", "randn", "randint", "randperm", "normal", "zeros", "ones", "full", "empty",
             "arange", "linspace", "eye", "bernoulli", "multinomial"}
ALLOWED_FILES = {"runtime.py"}


def violations(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "torch" \
                and f.attr in FORBIDDEN:
            found.append(f"{name}:{node.lineno}: torch.{f.attr}(...) — use delusive.runtime instead")
    return found


def test_tensors_and_generators_come_from_the_runtime_helper():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name in ALLOWED_FILES and path.parent == SRC:
            continue
        problems += violations(path.read_text(encoding="utf-8"), str(path.relative_to(SRC)))
    assert not problems, "raw torch constructors outside runtime.py:\n" + "\n".join(problems)


def test_the_checker_catches_a_cpu_generator_and_a_cpu_tensor():
    bad = "import torch\ng = torch.Generator().manual_seed(0)\nx = torch.zeros(3)\ny = torch.zeros_like(x)\n"
    found = violations(bad, "probe.py")
    assert sorted(v.split(":")[1] for v in found) == ["2", "3"]  # the *_like constructor inherits its device: allowed
