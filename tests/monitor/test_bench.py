"""The benchmark end to end on a tiny model (records, arrays, resuming, the summary), and the evaluation on a
synthetic run whose signals are known: the monitor's AUROC is scikit-learn's on the stored signals, the supervised
comparator is reported in-domain and across tasks, degenerate answers join only their own subset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from retrieval_heads.config import ModelConfig
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.monitor.bench.run import BenchConfig, run_bench
from retrieval_heads.monitor.bench.evaluation import answer_signals, evaluate_run
from retrieval_heads.monitor.signals import MONITOR


def test_run_bench_on_a_tiny_model(model, tok, scores, haystack, tmp_path):
    hay = tmp_path / "hay.txt"
    hay.write_text(haystack)
    sc = tmp_path / "scores.json"
    scores.save(sc)
    cfg = BenchConfig(model=ModelConfig(model="tiny"), scores=str(sc), lengths=[200, 260], depths=[0, 50, 100],
                      haystack=str(hay), max_new_tokens=5, random_seeds=[0, 1], limit=6)
    out = tmp_path / "bench"
    summary = run_bench(model, tok, cfg, out, progress=False)
    recs = [r for r in read_jsonl(out / "items.jsonl") if r.get("type") == "item"]
    assert len(recs) == 6 and summary["answers"] == 6
    for r in recs:
        T = len(r["tokens"])
        assert set(r["signals"]) == {"retrieval", "retrieval-uniform", "all", "random-s0", "random-s1"}
        assert all(len(v) == T for s in r["signals"].values() for v in s.values())
        assert len(r["logprobs"]) == len(r["rauq_tokens"]) == len(r["token_labels"]) == T
        assert len(r["lookback"]) == 12 and r["prompt_tokens"] <= r["length"]
        assert r["monitor"]["hallucination_score"] == pytest.approx(
            answer_signals(r)[MONITOR], abs=1e-4) if T else True
        arr = np.load(out / "arrays" / f"{r['id']}.npz")
        assert arr["lr"].shape == (T, 12) and arr["copy"].dtype == bool
    meta = json.loads((out / "config.json").read_text())
    assert len(meta["head_sets"]["random-s0"]) == len(meta["head_sets"]["retrieval"]) == 3
    assert not set(meta["head_sets"]["random-s0"]) & set(meta["head_sets"]["retrieval"])
    # resuming adds nothing; the summary and tables are there
    run_bench(model, tok, cfg, out, progress=False)
    assert len([r for r in read_jsonl(out / "items.jsonl") if r.get("type") == "item"]) == 6
    assert (out / "summary.json").is_file() and (out / "tables.md").is_file()


def _fake_run(path, n=120, seed=0, kinds=("niah", "counterfactual")):
    rng = np.random.default_rng(seed)
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"config": {"model": {"model": "fake"}}, "model": {"spec": "fake"}}))
    lines = [json.dumps({"type": "header"})]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        cls = "degenerate" if i % 15 == 0 else ("hallucinated" if kind == "unanswerable" or rng.random() < 0.35
                                                 else "correct")
        label = None if cls == "degenerate" else int(cls == "hallucinated")
        T = 4
        wrong = 1 if label is None else label
        copy = list(np.clip(rng.normal(0.6 - 0.4 * wrong, 0.2, T), 0, 1))
        sig = {"copy": copy, "copy_q": [0.0] * T, "mass": list(rng.uniform(0.3, 0.7, T))}
        noise = {"copy": list(rng.uniform(0, 1, T)), "copy_q": [0.0] * T, "mass": list(rng.uniform(0, 1, T))}
        lb = rng.normal(0, 1, 6) + (np.arange(6) == 2) * 2 * wrong * (1 if kind == "niah" else -1)
        common = "Paris" if kind == "unanswerable" and i % 2 else None
        lines.append(json.dumps({
            "type": "item", "id": f"it-{i}", "kind": kind, "source": f"s-{i % 10}", "length": (1000, 2000)[i % 3 == 0],
            "judge": {"class": cls}, "label": label, "parametric": common is not None, "content": [True] * T,
            "token_labels": [None] * T if label is None else [label, 0, label, 0],
            "signals": {"retrieval": sig, "all": noise}, "logprobs": list(-rng.uniform(0, 2, T)),
            "entropies": list(rng.uniform(0, 3, T)), "rauq_tokens": list(rng.uniform(0, 3, T)),
            "baselines": {"mean_logprob": -1.0 * rng.random(), "min_logprob": -2.0, "max_entropy": 1.0,
                          "mean_entropy": 0.5, "n_tokens": T, "rauq": rng.random()},
            "lookback": list(lb)}))
    (path / "items.jsonl").write_text("\n".join(lines) + "\n")
    return [json.loads(l) for l in lines[1:]]


def test_evaluate_on_known_signals(tmp_path):
    recs = _fake_run(tmp_path / "run")
    s = evaluate_run(tmp_path / "run")
    lab = [r for r in recs if r["label"] is not None]
    y = [r["label"] for r in lab]
    sig = [r["signals"]["retrieval"] for r in lab]
    assert all(r["content"] == [True] * 4 and s["copy_q"] == [0.0] * 4 for r, s in zip(lab, sig))  # all counted
    mon = [np.mean([1 - 0.5 * (c + m) for c, m in zip(s["copy"], s["mass"])]) for s in sig]  # the combined score
    row = s["subsets"]["all"][MONITOR]
    assert row["auroc"] == pytest.approx(roc_auc_score(y, mon), abs=1e-4) and row["n"] == len(lab)
    assert row["auroc"] > 0.8 and s["subsets"]["all"]["all:combined"]["auroc"] < row["auroc"]
    assert row["token"]["n_answers"] == len(lab)
    assert s["subsets"]["all+degenerate"][MONITOR]["n"] == len(recs)
    look = s["subsets"]["niah"]["lookback[in-domain]"]
    assert look["n"] == sum(1 for r in lab if r["kind"] == "niah") and look["auroc"] > 0.7
    # the informative head flips sign between tasks: trained on one task, the classifier fails on the other
    assert s["subsets"]["counterfactual"]["lookback[niah->counterfactual]"]["auroc"] < 0.5
    assert "monitor_minus" in s["subsets"]["all"]["mean_logprob"]
    md = (tmp_path / "run" / "tables.md").read_text()
    assert "SUPERVISED" in md and "## AUROC by length" in md and f"`{MONITOR}`" in md and "## Goals" in md
    g = s["goals"]["all"]
    assert g["auroc"] == row["auroc"] and g["closest_unsupervised"]["name"] != MONITOR
    assert s["subsets"]["strict"][MONITOR]["n"] == sum(r["judge"]["class"] in ("correct", "hallucinated") for r in recs)
    for png in ("roc.png", "auroc.png"):
        assert (tmp_path / "run" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unanswerable_items_join_the_counterfactual_task(tmp_path):
    recs = _fake_run(tmp_path / "run", n=150, kinds=("niah", "counterfactual", "unanswerable"))
    s = evaluate_run(tmp_path / "run")
    lab = [r for r in recs if r["label"] is not None]
    un = [r for r in recs if r["kind"] == "unanswerable"]
    sub = s["subsets"]
    assert sub["counterfactual"][MONITOR]["n"] == sum(r["kind"] != "niah" for r in lab)
    assert sub["answerable"][MONITOR]["n"] == sum(r["kind"] != "unanswerable" for r in lab)
    assert sub["counterfactual"]["lookback[niah->counterfactual]"]["n"] == sub["counterfactual"][MONITOR]["n"]
    assert sub["all"]["lookback[in-domain]"]["n"] == len(lab)  # out-of-fold scores for every labelled answer
    assert s["counts"]["unanswerable"] == {"items": len(un), "refused": sum(r["label"] is None for r in un),
                                           "answered": sum(r["label"] == 1 for r in un),
                                           "parametric": sum(r["label"] == 1 and r["parametric"] for r in un)}
    assert "Unanswerable items" in (tmp_path / "run" / "tables.md").read_text()
    _fake_run(tmp_path / "two-kinds")  # the `answerable` subset only when there are unanswerable items
    assert "answerable" not in evaluate_run(tmp_path / "two-kinds")["subsets"]


def test_a_subset_with_one_class_is_said_so(tmp_path):
    recs = _fake_run(tmp_path / "run")
    for r in recs:  # the model answers every NIAH item right (Qwen missed 1 of 125)
        if r["kind"] == "niah" and r["label"] == 1:
            r.update(label=0, judge={"class": "correct"}, token_labels=[0] * len(r["token_labels"]))
    (tmp_path / "run" / "items.jsonl").write_text("\n".join(json.dumps(r) for r in [{"type": "header"}, *recs]))
    s = evaluate_run(tmp_path / "run")
    assert s["subsets"]["niah"][MONITOR]["auroc"] is None and s["subsets"]["all"][MONITOR]["auroc"] is not None
    md = (tmp_path / "run" / "tables.md").read_text()
    n = sum(r["kind"] == "niah" and r["label"] is not None for r in recs)
    assert f"## niah\n\n{n} answers, 0 wrong: under 5 of a class, no AUROC." in md
