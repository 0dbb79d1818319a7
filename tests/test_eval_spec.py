"""Every robust number says what produced it (issue 19, parts 3-4): the eval_spec record and its one line, the
Wilson interval, fp32 evaluation whatever the training precision, and AutoAttack's self-checks."""

import json
import warnings

import pytest
import torch
from scipy.stats import binomtest
from torch import nn

from delusive.cli.main import main
from delusive.evaluation import describe_eval_spec, evaluate, robust_predictions, self_check_warnings, wilson_interval
from delusive.evaluation.attacks import robust_correct
from delusive.threat import LinfBall

CONTRACT_KEYS = {"attack", "components", "norm", "eps", "steps", "restarts", "step_size", "queries", "n", "subset",
                 "precision", "robust_ci95", "natural_ci95", "natural_n"}
pytestmark = pytest.mark.usefixtures("one_thread")


# --- Wilson ----------------------------------------------------------------------------------------------
def test_wilson_interval_known_values():
    # textbook values (Newcombe 1998, Table I: 81/263 -> 0.2553-0.3662; 0/10 -> 0-0.2775; 5/10 -> 0.2366-0.7634)
    for (k, n), (lo, hi) in {(81, 263): (0.2553, 0.3662), (0, 10): (0.0, 0.2775), (5, 10): (0.2366, 0.7634),
                             (15, 148): (0.0624, 0.1605)}.items():
        got = wilson_interval(k, n)
        assert got == pytest.approx((lo, hi), abs=5e-5), (k, n)
    for k, n in ((0, 1), (1, 1), (3, 300), (297, 300), (512, 1000)):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=2e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    narrow, wide = wilson_interval(50, 100, z=1.0), wilson_interval(50, 100)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    with pytest.raises(ValueError, match="need 0 <= k <= n, got k=5, n=3"):
        wilson_interval(5, 3)


# --- the record ------------------------------------------------------------------------------------------
def test_evaluate_records_the_spec_of_contract_3(synth, synth_model):
    m = evaluate(synth_model, synth, LinfBall(0.1), steps=3, robust_limit=40, seed=2, attack="autoattack",
                 queries=20)
    spec = m["eval_spec"]
    assert set(spec) == CONTRACT_KEYS
    assert spec["attack"] == "autoattack" and spec["components"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert spec["norm"] == "linf" and spec["eps"] == "0.1" and spec["steps"] == 3 and spec["restarts"] == 1
    assert spec["queries"] == 20 and spec["n"] == 40 and spec["precision"] == "fp32"
    assert spec["subset"] == "seeded class-stratified, seed 2" and spec["natural_n"] == len(synth)
    k = round(m["robust_accuracy"] * 40)
    assert spec["robust_ci95"] == list(wilson_interval(k, 40))
    assert spec["natural_ci95"] == list(wilson_interval(round(m["natural_accuracy"] * len(synth)), len(synth)))
    assert "APGD adaptive" in spec["step_size"] and "FAB" in spec["step_size"]
    pgd = evaluate(synth_model, synth, LinfBall(0.1), steps=20, robust_limit=None, attack="pgd")["eval_spec"]
    assert pgd["step_size"] == "2.5ε/20" and pgd["queries"] is None and pgd["subset"] == "all"
    sq = evaluate(synth_model, synth, LinfBall(0.1), robust_limit=10, attack="square", queries=5)["eval_spec"]
    assert sq["steps"] is None and sq["queries"] == 5 and sq["components"] == ["square"]


def test_describe_eval_spec_is_one_line_with_the_ci():
    spec = {"attack": "autoattack", "components": ["apgd-ce", "apgd-t", "fab-t", "square"], "norm": "linf",
            "eps": "0.2", "steps": 100, "restarts": 1, "step_size": "APGD adaptive", "queries": 5000, "n": 1000,
            "subset": "seeded class-stratified, seed 0", "precision": "fp32", "robust_ci95": [0.512, 0.574],
            "natural_ci95": [0.881, 0.893], "natural_n": 10000}
    line = describe_eval_spec(spec)
    assert "\n" not in line
    assert line == ("autoattack (apgd-ce → apgd-t → fab-t → square), linf ε=0.2, 100 steps, 1 restart, step APGD "
                    "adaptive, 5000 queries, fp32, n=1000 test images (seeded class-stratified, seed 0), robust 95% "
                    "CI [51.2, 57.4]%, natural 95% CI [88.1, 89.3]% (n=10000)")
    assert describe_eval_spec(None) == describe_eval_spec({}) == "evaluation spec not recorded"


# --- fp32 ------------------------------------------------------------------------------------------------
class DtypeProbe(nn.Module):
    """A linear classifier that records the dtype of its logits (bf16 under an active autocast)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16 * 16, 4)
        self.dtypes: set[torch.dtype] = set()

    def forward(self, x):
        out = self.fc(x.flatten(1))
        self.dtypes.add(out.dtype)
        return out


def test_attacks_run_in_fp32_even_inside_a_bf16_autocast(synth):
    x, y = synth.tensors()
    probe = DtypeProbe().eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probe(x[:4])
    assert probe.dtypes == {torch.bfloat16}  # control: the autocast is live on this CPU
    for attack in ("pgd", "autoattack"):
        probe.dtypes.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            robust_correct(probe, x[:20], y[:20], LinfBall(0.1), attack, steps=2, queries=3, precision="bf16")
        assert probe.dtypes == {torch.float32}, attack
    probe.dtypes.clear()
    robust_predictions(probe, x[:20], y[:20], LinfBall(0.1), steps=2, precision="bf16")
    evaluate(probe, synth, LinfBall(0.1), steps=2, robust_limit=20, precision="bf16", attack="apgd")
    assert probe.dtypes == {torch.float32}


def test_a_model_trained_in_bf16_is_evaluated_in_fp32_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--dataset", "synthetic", "--epochs", "1", "--train-subset", "200", "--robust-subset", "20",
            "--eval-steps", "2", "--eval-attack", "apgd", "--precision", "bf16", "--device", "cpu", "--val-size",
            "0", "--out", "run"]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and metrics["eval_spec"]["precision"] == "fp32"
    out = capsys.readouterr().out
    assert "evaluation: apgd (apgd-ce → apgd-t)" in out and "fp32" in out and "(trained in bf16)" in out
    # delusive eval: the same model, the spec line with its CI, and the training precision from the run
    assert main(["eval", "run", "--attack", "autoattack", "--eval-steps", "2", "--eval-queries", "5",
                 "--robust-subset", "20", "--device", "cpu", "--out", "m.json"]) == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith("evaluation: ")]
    assert len(line) == 1 and "autoattack (apgd-ce → apgd-t → fab-t → square)" in line[0]
    assert "robust 95% CI [" in line[0] and "fp32" in line[0] and "(model trained in bf16)" in line[0]
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["train_precision"] == "bf16" and m["eval_spec"]["precision"] == "fp32"
    assert m["eval_spec"]["queries"] == 5 and m["robust_attack"]["components"] == m["eval_spec"]["components"]


# --- self-checks ---------------------------------------------------------------------------------------------
class Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([2.0, 1.0, 0.0, -1.0]))

    def forward(self, x):
        return self.bias.expand(x.shape[0], -1) + 0 * x.flatten(1)[:, :1]


class Noisy(nn.Module):
    """A randomized defense: Gaussian input noise at test time too."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x + 0.05 * torch.randn_like(x))


class Rounded(nn.Module):
    """Quantised input (a straight step function): the input gradient is zero almost everywhere."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 4) / 4)


def _checks(model, synth):
    x, y = synth.tensors()
    with torch.no_grad():
        preds = model.eval()(x).argmax(1)
    return self_check_warnings(model, x, y, preds)


def test_self_checks_fire_on_broken_models_and_not_on_a_normal_one(synth, synth_model):
    assert _checks(synth_model, synth) == []  # control: a trained, deterministic, differentiable model
    constant = _checks(Constant(), synth)
    assert any("predicts class 0 for all 600 test images" in n for n in constant)
    assert any("input gradient is zero for 64 of 64 examples" in n for n in constant)
    noisy = _checks(Noisy(synth_model), synth)
    assert len(noisy) == 1 and "two forward passes of the same input differ" in noisy[0]
    rounded = _checks(Rounded(synth_model), synth)
    assert len(rounded) == 1 and "input gradient is zero" in rounded[0]
    assert all("\n" not in n for n in constant + noisy + rounded)


def test_evaluate_warns_once_per_problem_and_the_cli_renders_one_line(synth, synth_model, tmp_path, capsys):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        evaluate(Noisy(synth_model), synth, LinfBall(0.1), steps=1, robust_limit=10, attack="pgd")
    assert [str(w.message) for w in seen if "self-check" in str(w.message)] != []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        evaluate(synth_model, synth, LinfBall(0.1), steps=1, robust_limit=10, attack="pgd")
    assert not [w for w in seen if "self-check" in str(w.message)]  # control
    # the CLI's rendering: one "delusive: warning: ..." line, no source line
    from delusive.cli import main as cli_main

    text = cli_main._format_warning(UserWarning("self-check: a\nb"), UserWarning, "f.py", 3)
    assert text == "delusive: warning: self-check: a b\n"


def test_constant_model_through_the_cli_warns_in_one_line(tmp_path):
    """In a real process (pytest records warnings itself): each self-check is one ``delusive: warning:`` line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from delusive.models import create_model, save_model

    spec = {"arch": "mlp", "num_classes": 10, "in_channels": 1, "image_size": 28}
    constant = create_model("mlp", 10, 1, 28, seed=0)
    with torch.no_grad():
        for p in constant.parameters():
            p.zero_()
    save_model(constant, tmp_path / "c" / "model.pt", spec, {"dataset": "synthetic"})
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "delusive", "eval", "c", "--dataset", "synthetic", "--attack", "pgd",
                           "--eval-steps", "1", "--robust-subset", "10", "--device", "cpu"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "self-check" in ln]
    assert len(lines) == 2 and all(ln.startswith("delusive: warning: self-check: ") for ln in lines), proc.stderr
    assert "predicts class 0 for all 500 test images" in lines[0] and "gradient is zero" in lines[1]
    assert not [ln for ln in proc.stderr.splitlines() if "warnings.warn" in ln]  # no source line


def test_natural_only_evaluation_still_flags_a_constant_predictor(synth, synth_model):
    with pytest.warns(UserWarning, match="self-check: the model predicts class 0 for all 600 test images"):
        m = evaluate(Constant(), synth)
    assert "eval_spec" not in m and "robust_accuracy" not in m
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        evaluate(synth_model, synth)
    assert not [w for w in seen if "self-check" in str(w.message)]  # control
