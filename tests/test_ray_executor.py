"""Sweeps as Ray tasks on a local two-CPU Ray cluster started here (one per module): the same records and
table as the in-process executor, the shared poison crafted exactly once, and a sweep whose worker was killed
mid-cell completes on a rerun with the same results."""

import os
import signal
import sys
import threading
import time

import pytest

from delusive.experiments.executors import build_graph, make_executor
from delusive.experiments.executors.ray_cluster import RayExecutor, runtime_env
from delusive.experiments.poisoning import clean_training_set
from delusive.experiments.report import write_report
from delusive.experiments.runner import SweepError, run_sweep
from delusive.experiments.spec import SpecError, expand, parse_spec
from delusive.experiments.store import RunStore

ray = pytest.importorskip("ray")  # an optional extra: without it (the GPU machine) this module skips, not errors

# two cells (standard training and random-noise training) sharing one P5 poison
TINY = {
    "name": "tiny", "datasets": ["synthetic"], "train_subset": 200, "attacks": ["P5"],
    "attack_budget": {"norm": "linf", "eps": "0.1"},
    "defenses": [{"name": "standard", "label": "ST"}, {"name": "random_noise", "label": "RN", "norm": "linf",
                                                        "eps": "0.1"}],
    "models": ["mlp"], "train": {"epochs": 1, "batch_size": 50, "precision": "fp32"},
    "eval": {"attack": "pgd", "steps": 1, "robust_subset": 20, "val_size": 0, "epoch_subset": 20},
    "seeds": [0], "device": "cpu", "resources": {"cpus_per_cell": 1, "gpus_per_cell": 0},
}
KEYS = ("natural_accuracy", "robust_accuracy", "last_natural_accuracy", "selected_epoch")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env())
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_ref(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return {r["cell_id"]: r for r in run_sweep(parse_spec(TINY), out)}


def _same(records, ref):
    got = {r["cell_id"]: r for r in records}
    assert set(got) == set(ref)
    for cid, r in got.items():
        assert {k: r[k] for k in KEYS} == {k: ref[cid][k] for k in KEYS}
        assert r["poison"]["payload_sha256"] == ref[cid]["poison"]["payload_sha256"]
        assert abs(r["history"][0]["train_loss"] - ref[cid]["history"][0]["train_loss"]) < 1e-5


def test_resources_are_validated_and_not_part_of_the_cell_identity():
    other = {**TINY, "resources": {"cpus_per_cell": 2, "gpus_per_cell": 0.5}}
    assert [c.cell_id for c in expand(parse_spec(TINY))] == [c.cell_id for c in expand(parse_spec(other))]
    assert parse_spec(other).resources == {"cpus_per_cell": 2.0, "gpus_per_cell": 0.5}
    with pytest.raises(SpecError, match="resources: unknown key\\(s\\) gpus"):
        parse_spec({**TINY, "resources": {"gpus": 1}})
    with pytest.raises(SpecError, match="resources.cpus_per_cell: expected a number"):
        parse_spec({**TINY, "resources": {"cpus_per_cell": 0}})
    units = build_graph(expand(parse_spec(TINY)))
    assert [u.kind for u in units] == ["artifact", "cell", "cell"]  # one shared poison, two cells wait for it
    assert all(u.deps == (units[0].uid,) for u in units[1:])
    with pytest.raises(ValueError, match="--executor: expected one of local, ray"):
        make_executor("dask")


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like to import
    with pytest.raises(RuntimeError, match=r"pip install 'delusive\[ray\]'"):
        make_executor("ray")
    assert make_executor("local").name == "local"


def test_ray_sweep_matches_local_and_crafts_the_shared_poison_once(cluster, local_ref, tmp_path, capsys):
    spec = parse_spec(TINY)
    records = run_sweep(spec, tmp_path / "run", executor="ray")
    _same(records, local_ref)
    store = RunStore(tmp_path / "run")
    art = build_graph(expand(spec))[0]
    assert [e["event"] for e in store.attempts("artifact", art.key)] == ["start", "done"]
    for r in records:
        assert [e["event"] for e in store.attempts("cell", r["cell_id"])] == ["start", "done"]
        assert {e["pid"] for e in store.attempts("cell", r["cell_id"])} != {os.getpid()}  # ran on a worker
    # control: the poison really differs from the clean data it was made from
    clean = clean_training_set("synthetic", None, {"size": 200, "seed": 0})
    assert records[0]["poison"]["payload_sha256"] != clean.sha256()
    assert "cells: 2 done, 0 running, 0 failed, 2 in all" in capsys.readouterr().err
    # the report's accuracy tables, without the timing columns and the attack-cost table (seconds)
    table = lambda d: [ln.rsplit("|", 2)[0] for ln in write_report(  # noqa: E731
        list(d), tmp_path / f"rep{id(d)}")["table_md"].read_text().split("cost of the attacks")[0].splitlines()]
    assert table(records) == table(local_ref.values())
    # a rerun runs nothing
    again = run_sweep(spec, tmp_path / "run", executor="ray")
    assert sorted(r["cell_id"] for r in again) == sorted(local_ref)
    assert all(len(store.attempts("cell", r["cell_id"])) == 2 for r in again)


def test_killed_worker_then_rerun_completes_with_identical_results(cluster, local_ref, tmp_path):
    spec = parse_spec(TINY)
    out = tmp_path / "run"
    store = RunStore(out)
    outcome: dict = {}

    def sweep():
        try:
            outcome["records"] = run_sweep(spec, out, executor=RayExecutor(max_retries=0))
        except SweepError as e:
            outcome["error"] = e

    t = threading.Thread(target=sweep)
    t.start()
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline and t.is_alive():
        for log in sorted(store.lock_dir.glob("cell-*.log")) if store.lock_dir.exists() else []:
            events = [e for e in store.attempts("cell", log.stem.removeprefix("cell-"))]
            if events and events[-1]["event"] == "start":
                victim = (log.stem.removeprefix("cell-"), events[-1]["pid"])
                os.kill(victim[1], signal.SIGKILL)
                break
        time.sleep(0.02)
    t.join(timeout=180)
    assert victim is not None, "no cell started"
    assert "error" in outcome, "the killed cell did not fail the sweep"
    assert victim[0] in str(outcome["error"]) and "rerun the same command" in str(outcome["error"])
    assert not store.is_done(victim[0])
    records = run_sweep(spec, out, executor="ray")  # finishes only what is missing
    _same(records, local_ref)
    starts = [e for e in store.attempts("cell", victim[0]) if e["event"] == "start"]
    assert len(starts) == 2
