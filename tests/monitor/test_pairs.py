"""`rheads monitor pairs` on the tiny model: one record per counterfactual fact, each answer scored both ways
(copies by text and by id) exactly as the Monitor scores it, shares and paired differences from the records,
a resumed run that adds nothing; and the pair rule (a tie counts one half) on hand-made records."""

from __future__ import annotations

import json

import pytest

from retrieval_heads.config import ModelConfig
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.monitor import Monitor
from retrieval_heads.monitor.bench.items import counterfactual_facts, materialize, plan
from retrieval_heads.monitor.bench.pairs import PairsConfig, format_table, right, run_pairs


def test_pairs_on_a_tiny_model(model, tok, scores, haystack, tmp_path):
    hay = tmp_path / "hay.txt"
    hay.write_text(haystack)
    sc = tmp_path / "scores.json"
    scores.save(sc)
    cfg = PairsConfig(model=ModelConfig(model="tiny"), scores=str(sc), lengths=[160], depths=[0, 50, 100],
                      haystack=str(hay))
    out = tmp_path / "pairs"
    summary = run_pairs(model, tok, cfg, out, progress=False)
    recs = [r for r in read_jsonl(out / "pairs.jsonl") if r.get("type") == "pair"]
    assert len(recs) == summary["n_pairs"] == len(counterfactual_facts())
    for s, v in summary["signals"].items():
        vals = [right(r, s) for r in recs]
        assert v["n"] == len(vals) and v["right"] == pytest.approx(sum(vals) / len(vals), abs=1e-4)
    d = summary["diffs"]["monitor - monitor[id]"]
    assert d["diff"] == pytest.approx(summary["signals"]["monitor"]["right"] - summary["signals"]["monitor[id]"]["right"],
                                      abs=2e-4)
    item = next(i for i in plan([160], [0, 50, 100], niah_per_cell=0, cf_per_cell=1) if i.id == recs[0]["id"])
    ctx = materialize(item, tok, haystack)
    for mode, key in (("text", "monitor"), ("id", "monitor[id]")):
        rep = Monitor(model, tok, str(sc), copy_match=mode).score(ctx, item.question, item.common)
        assert recs[0]["signals"][key]["common"] == pytest.approx(rep.hallucination_score)
    assert recs[0]["signals"]["mean_logprob"]["common"] == pytest.approx(-rep.baselines["mean_logprob"])
    assert "pairs:" in format_table(summary) and json.loads((out / "summary.json").read_text())["n_pairs"] == len(recs)
    run_pairs(model, tok, cfg, out, progress=False)  # resuming adds nothing
    assert len([r for r in read_jsonl(out / "pairs.jsonl") if r.get("type") == "pair"]) == len(recs)


def test_the_pair_rule():
    rec = lambda a, b: {"signals": {"s": {"stated": a, "common": b}}}  # noqa: E731
    assert right(rec(0.2, 0.5), "s") == 1.0 and right(rec(0.5, 0.2), "s") == 0.0 and right(rec(0.3, 0.3), "s") == 0.5
    assert right(rec(None, 0.3), "s") is None
