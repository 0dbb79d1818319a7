"""The scripts that check our APGD-CE, FAB-T and Square against torchattacks run end to end: here against a
stand-in torchattacks package that attacks nothing (the real one is never installed by the project), so
"theirs" is the clean accuracy — a check with a tight tolerance must FAIL (ours does break examples: the live
control), a loose one PASS, and a missing package is a usage error that names the pip command."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from delusive.cli.main import main as delusive

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
FAKE = '''
import torch
__version__ = "stand-in"
class _Nothing:
    def __init__(self, model, **kw):
        self.model = model
    def __call__(self, x, y):
        return x.clone()
    def perturb(self, x, y, cheap=True):
        with torch.no_grad():
            return self.model(x).argmax(1) == y, x
APGD = FAB = Square = _Nothing
'''


def _script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("refcheck")
    (root / "ta" / "torchattacks").mkdir(parents=True)
    (root / "ta" / "torchattacks" / "__init__.py").write_text(FAKE)
    assert delusive(["train", "--dataset", "synthetic", "--train-subset", "600", "--epochs", "3", "--lr", "0.1",
                     "--batch-size", "64", "--robust-subset",
                     "10", "--eval-steps", "1", "--eval-attack", "pgd", "--device", "cpu",
                     "--out", str(root / "run")]) == 0
    yield root
    sys.modules.pop("torchattacks", None)


@pytest.mark.parametrize(("script", "extra"), [
    ("apgd_reference_check", ["--steps", "5"]),
    ("fab_square_reference_check", ["--steps", "3", "--queries", "30"]),
])
def test_a_check_passes_within_its_tolerance_and_fails_outside_it(run, script, extra, tmp_path, capsys):
    argv = [str(run / "run"), "--torchattacks-path", str(run / "ta"), "--limit", "60", "--eps", "0.5",
            "--device", "cpu", *extra]
    assert _script(script).main([*argv, "--tolerance", "100", "--json", str(tmp_path / "r.json")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASS")
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["natural_accuracy"] > 0.3  # above chance: a trained model, not a constant predictor
    rows = result["attacks"].values() if "attacks" in result else \
        [{"ours": result["ours_apgd_ce"], "torchattacks": result["torchattacks_apgd_ce"]}]
    for row in rows:  # the stand-in breaks nothing: theirs is the clean accuracy; ours breaks some at ε 0.5
        assert row["torchattacks"] == pytest.approx(result["natural_accuracy"])
        assert row["ours"] < row["torchattacks"]
    assert _script(script).main([*argv, "--tolerance", "0"]) == 1
    assert capsys.readouterr().out.rstrip().endswith("FAIL")


@pytest.mark.parametrize("script", ["apgd_reference_check", "fab_square_reference_check"])
def test_a_missing_torchattacks_folder_is_a_usage_error_naming_the_install(script, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _script(script).main([str(tmp_path), "--torchattacks-path", str(tmp_path / "nowhere")])
    assert e.value.code == 2
    assert "pip install --no-deps --target" in capsys.readouterr().err
