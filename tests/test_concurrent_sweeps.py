"""Two sweeps started at once into one run directory split the work through per-unit claims: every cell and
every shared poison runs exactly once, both commands succeed, and the report is complete; a claim held by a
live process is seen as held, and a claim of a killed process is free again."""

import json
import os
import subprocess
import sys

import yaml

from delusive.experiments.executors import build_graph
from delusive.experiments.spec import expand, parse_spec
from delusive.experiments.store import RunStore

SPEC = {
    "name": "concurrent", "datasets": ["synthetic"], "train_subset": 200, "attacks": ["clean", "P5"],
    "attack_budget": {"norm": "linf", "eps": "0.1"}, "defenses": [{"name": "standard", "label": "ST"}],
    "models": ["mlp"], "train": {"epochs": 1, "batch_size": 50, "precision": "fp32"},
    "eval": {"attack": "pgd", "steps": 1, "robust_subset": 20, "val_size": 0, "epoch_subset": 20},
    "seeds": [0, 1], "device": "cpu",
}


def test_two_concurrent_sweeps_run_every_cell_once(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "run"
    env = {**os.environ, "DELUSIVE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "delusive", "sweep", str(spec_path), "--out", str(out)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    store = RunStore(out)
    units = build_graph(expand(parse_spec(SPEC)))
    assert sorted(u.kind for u in units) == ["artifact"] * 2 + ["cell"] * 4
    for u in units:
        events = [e["event"] for e in store.attempts(u.kind, u.key)]
        assert events == ["start", "done"], (u.uid, events)
    assert len(store.records()) == 4
    runners = {store.attempts("cell", u.key)[0]["pid"] for u in units if u.kind == "cell"}
    assert runners <= {p.pid for p in procs}
    table = (out / "report" / "table.md").read_text()
    assert "| ST |" in table and "P5" in table and "clean" in table
    csv = (out / "report" / "table.csv").read_text().splitlines()
    assert len(csv) >= 2
    assert json.loads((out / "cells.json").read_text()) == [c.cell_id for c in expand(parse_spec(SPEC))]
    # both printed the same finished table
    assert results[0][0].split("cells in")[0].split("train time")[0] == results[1][0].split("cells in")[0].split(
        "train time")[0]


def test_claims_are_exclusive_and_die_with_their_holder(tmp_path):
    store = RunStore(tmp_path)
    with store.claim("cell", "abc") as got:
        assert got and store.is_claimed("cell", "abc")
        with store.claim("cell", "abc", blocking=False) as again:  # a second descriptor: flock excludes it
            assert not again
    assert not store.is_claimed("cell", "abc")
    lock = store.lock_dir / "cell-xyz.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"), str(lock)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert store.is_claimed("cell", "xyz")
    finally:
        holder.kill()
        holder.wait()
    assert not store.is_claimed("cell", "xyz")  # the kernel released the dead holder's claim
