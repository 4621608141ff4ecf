"""`kv-sweep --suite` (studies/kvsuite.py) on a tiny random Llama: one suite folder per arm on the same samples,
rows per policy, budget, task and length, a budget of 1 scoring as the full cache, paired differences, resume,
and the one-line refusals before anything is written."""

from __future__ import annotations

import dataclasses

import pytest

from retrieval_heads.errors import ParamError
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.studies.kvsuite import KVSuiteConfig, format_table, paired_mean_diff, run_kv_suite
from suite_helpers import scored_suite


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok, model, suite, scores = scored_suite(tmp_path_factory.mktemp("kvsuite"), ["niah_single_1", "niah_single_2"])
    return tok, model, dataclasses.replace(suite, scores=scores)


def _preds(path):
    return [r for r in read_jsonl(path / "predictions.jsonl") if r.get("type") == "prediction"]


def test_every_policy_at_every_budget_on_the_same_samples(setup, tmp_path):
    tok, model, suite = setup
    cfg = KVSuiteConfig(suite=suite, policies=["full", "snapkv", "hybrid"], budgets=[0.3, 1.0])
    out = tmp_path / "sweep"
    summary = run_kv_suite(model, tok, cfg, out, progress=False)
    assert summary["missing"] == [] and [a for a, _, _ in cfg.arms()] == ["full", "snapkv-b0.3", "hybrid-b0.3",
                                                                            "snapkv-b1", "hybrid-b1"]
    ids = {arm: sorted(r["id"] for r in _preds(out / arm)) for arm, _, _ in cfg.arms()}
    assert len({tuple(v) for v in ids.values()}) == 1 and len(ids["full"]) == 6  # the same samples in every arm
    rows = summary["rows"]
    keys = {"policy", "budget", "task", "length", "score", "n", "kv_bytes", "kv_bytes_full"}
    assert all(keys <= set(r) for r in rows)
    task_rows = [r for r in rows if r["task"] != "mean"]
    assert {(r["arm"], r["task"]) for r in task_rows} == {(a, t) for a, _, _ in cfg.arms() for t in suite.tasks}
    full = {r["id"]: r["pred"] for r in _preds(out / "full")}
    for arm in ("snapkv-b1", "hybrid-b1"):  # a budget of 1 keeps everything: the full cache's answers
        assert {r["id"]: r["pred"] for r in _preds(out / arm)} == full
    small = next(r for r in rows if r["arm"] == "snapkv-b0.3")
    assert small["kv_bytes"] < small["kv_bytes_full"]
    pairs = {(d["policy"], d["budget"], d["against"]): d for d in summary["paired"]}
    assert ("hybrid", 0.3, "snapkv-b0.3") in pairs and ("snapkv", 0.3, "full") in pairs
    assert pairs[("hybrid", 1.0, "full")]["diff"] == 0.0 and pairs[("hybrid", 1.0, "full")]["n"] == 6
    assert (out / "budgets.png").stat().st_size > 1000 and "snapkv-b0.3" in format_table(summary)
    again = run_kv_suite(model, tok, cfg, out, progress=False)  # resumes: nothing decoded again
    assert again["rows"] == summary["rows"]


def test_paired_mean_diff_averages_cells_as_the_mean_does():
    a = [{"id": f"t{i}", "task": "x" if i < 2 else "y", "length": 1, "score": s} for i, s in enumerate([100, 0, 50])]
    b = [{**r, "score": 0.0} for r in a]
    d = paired_mean_diff(a, b)
    assert d["diff"] == pytest.approx((50 + 50) / 2) and d["n"] == 3 and d["ci95"][0] <= d["diff"] <= d["ci95"][1]


@pytest.mark.parametrize("kw,param", [({"budgets": [1.5]}, "budgets"), ({"budgets": []}, "budgets"),
                                      ({"policies": ["full", "h2o"]}, "policies"),
                                      ({"policies": ["full"], "budgets": [0.2, 0]}, "budgets")])
def test_bad_sweeps_are_one_line_and_write_nothing(setup, tmp_path, kw, param):
    _, _, suite = setup
    with pytest.raises(ParamError) as e:
        run_kv_suite(None, None, KVSuiteConfig(suite=suite, **kw), tmp_path / "bad", progress=False)
    assert e.value.param == param and not (tmp_path / "bad").exists()
