"""Bad parameters of the field's poisons (EM, EM-class, REM, TAP, SEP, AR, LSP, OPS, CUDA) on the CLI: each answers
with one ``delusive: error:`` line naming the option, the bad value and what is allowed, and leaves no artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_cli_matrix import C, Case, check_answer, invoke, leftovers

POISON = ["poison", "--dataset", "synthetic", "--train-subset", "50", "--device", "cpu", "--out", "art/x"]


def P(attack: str, *params: str) -> list[str]:  # noqa: N802 - reads like the table's rows
    argv = [*POISON, "--attack", attack]
    for p in params:
        argv += ["--attack-param", p]
    return argv


CASES: list[Case] = [
    C("p.em-rounds", P("EM", "max_rounds=0"), 1, r"max_rounds: must be a whole number >= 1, got 0"),
    C("p.em-stop", P("EM", "stop_accuracy=1.5"), 1, r"stop_accuracy: must be in \(0, 1\], got 1\.5"),
    C("p.em-arch", P("EM", "arch=l2c-unet"), 1, r"arch: 'l2c-unet' is a generator, not a classifier"),
    C("p.em-class-step", P("EM-class", "rel_step_size=0"), 1, r"rel_step_size: must be a finite number > 0, got 0"),
    C("p.em-unknown", P("EM", "epochs=3"), 1, r"epochs"),
    C("p.rem-adv-eps", P("REM", "adv_eps=-1"), 1, r"adv_eps: expected a number or a fraction like 8/255, got '-1'"),
    C("p.rem-adv-steps", P("REM", "adv_steps=-2"), 1, r"adv_steps: must be a whole number >= 0, got -2"),
    C("p.tap-shift", [*P("TAP", "target_shift=10", "steps=1"), "--crafting-epochs", "1"], 1,
      r"target_shift: 10 maps every class to itself"),
    C("p.tap-max-shift", P("TAP", "max_shift=-1"), 1, r"max_shift: must be a whole number >= 0, got -1"),
    C("p.sep-checkpoints", P("SEP", "epochs=2", "checkpoints=3"), 1,
      r"checkpoints: at most one per epoch \(2\), got 3"),
    C("p.sep-steps", P("SEP", "steps=0"), 1, r"steps: must be a whole number >= 1, got 0"),
    C("p.ar-crop", P("AR", "crop=-1"), 1, r"crop: must be a whole number >= 0, got -1"),
    C("p.lsp-patch", P("LSP", "patch_size=0"), 1, r"patch_size: must be a whole number >= 1"),
    C("p.lsp-sep", P("LSP", "class_sep=inf"), 1, r"class_sep:? must be a finite number( > 0)?, got 'inf'"),
    C("p.cuda-kernel", P("CUDA", "kernel_size=2"), 1, r"kernel_size: must be an odd whole number >= 1, got 2"),
    C("p.cuda-blur", P("CUDA", "blur_parameter=-0.1"), 1, r"blur_parameter: must be a finite number >= 0, got -0\.1"),
    C("p.ops-budget", [*P("OPS"), "--norm", "linf", "--eps", "0.2"], 1,
      r"attack OPS: its budget is fixed \(l0 eps=1\); got linf eps=0\.2 \(drop --norm/--eps\)"),
    C("p.cuda-budget", [*P("CUDA"), "--eps", "0.1"], 1, r"attack CUDA: its budget is fixed \(linf eps=1\)"),
    C("p.ar-l0", [*P("AR"), "--norm", "l0", "--eps", "1"], 2, r"--norm: invalid choice: 'l0'"),
]


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DELUSIVE_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_poison_parameter(case: Case, ws: Path, capsys):
    code, out, err = invoke(case.argv, capsys)
    check_answer(case, code, out, err)
    assert not (ws / "art" / "x" / "manifest.json").exists()
    assert not leftovers(ws)
