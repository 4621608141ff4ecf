"""`rheads answer bench` on the tiny model: the three item families (the reserved HaluEval rows never used), every
method's answers, and the figures recomputed by hand from the records: accuracy, hallucination rate (a
counterfactual's real-world answer), abstention precision and recall, paired differences, the monitor's AUROC and
risk-coverage on greedy's answers; resume; and the evaluation on hand-made records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval_heads.answer.bench.evaluate import evaluate, hallucinated, risk_coverage
from retrieval_heads.answer.bench.items import bench_items
from retrieval_heads.answer.bench.run import AnswerBenchConfig, run_answer_bench
from retrieval_heads.config import ModelConfig
from retrieval_heads.errors import ParamError
from retrieval_heads.io.jsonl import read_jsonl
from answer_helpers import HAYSTACK


@pytest.fixture
def qa(tmp_path):
    rows = [{"knowledge": f"The river {w} flows past the old mill town.", "question": f"What flows past the town {i}?",
             "right_answer": f"the river {w}"} for i, w in enumerate(["Alder", "Birch", "Cedar", "Dunmore"])]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    held = tmp_path / "held.txt"
    held.write_text("1\n")
    hay = tmp_path / "hay.txt"
    hay.write_text(HAYSTACK)
    return str(path), str(held), str(hay)


def test_items_of_every_family_and_never_a_reserved_row(tok, qa):
    path, held, hay = qa
    items = bench_items(tok, families=["niah", "counterfactual", "halueval"], lengths=[160], depths=[0, 50],
                        halueval_items=10, seed=0, haystack=hay, qa_data=path, heldout=held)
    fams = [it["family"] for it in items]
    assert set(fams) == {"niah", "counterfactual", "halueval"} and fams == sorted(fams, key=["niah", "counterfactual",
                                                                                            "halueval"].index)
    halu = [it for it in items if it["family"] == "halueval"]
    assert [it["id"] for it in halu] == ["halueval-0", "halueval-2"]  # the eval split: even rows; row 1 reserved
    assert all("Birch" not in it["context"] for it in halu)
    assert all(it["common"] for it in items if it["family"] == "counterfactual")
    assert len({it["id"] for it in items}) == len(items)
    with pytest.raises(ParamError):
        bench_items(tok, families=["niah", "x"], lengths=[160], depths=[0], halueval_items=1, seed=0, haystack=hay)


def test_the_tune_split_is_disjoint_from_the_eval_split_and_per_family_samples(tok, qa):
    path, held, hay = qa
    kw = dict(families=["niah", "counterfactual", "halueval"], lengths=[160], depths=[0, 50], halueval_items=10,
              seed=0, haystack=hay, qa_data=path, heldout=held)
    ev, tu = bench_items(tok, **kw), bench_items(tok, split="tune", **kw)
    assert [it["id"] for it in tu if it["family"] == "halueval"] == ["halueval-3"]  # odd rows, 1 reserved
    for fam in ("niah", "counterfactual"):
        e = {(it["question"], it["answers"][0]) for it in ev if it["family"] == fam}
        t = {(it["question"], it["answers"][0]) for it in tu if it["family"] == fam}
        assert e and t and not e & t  # other needles, other facts
    assert len([it for it in ev if it["family"] == "counterfactual"]) == 32  # half of the 64 facts
    small = bench_items(tok, per_family=3, **kw)
    for fam in ("niah", "counterfactual", "halueval"):
        got = [it["id"] for it in small if it["family"] == fam]
        assert len(got) == min(3, sum(it["family"] == fam for it in ev)) and set(got) <= {it["id"] for it in ev}
    assert small == bench_items(tok, per_family=3, **kw)  # seeded
    with pytest.raises(ParamError, match="split"):
        bench_items(tok, split="test", **kw)
    with pytest.raises(ParamError, match="qa_2"):
        bench_items(tok, **{**kw, "families": ["qa_2"]}, split="tune")
    with pytest.raises(ParamError, match="per_family"):
        bench_items(tok, per_family=0, **kw)


def test_qa_2_items_are_the_suites_samples_split_into_context_and_question(tok, qa):
    path, held, _ = qa
    items = bench_items(tok, families=["qa_2"], lengths=[170, 400], depths=[0, 50], halueval_items=1, seed=0,
                        qa_data=path, heldout=held)
    assert [it["id"] for it in items] == ["qa_2-170-0", "qa_2-170-1", "qa_2-400-0", "qa_2-400-1"]
    for it in items:
        assert it["family"] == "qa_2" and it["context"].startswith("Document 1:\n") and "Birch" not in it["context"]
        assert it["answers"][0].lower() in it["context"].lower() and it["question"].startswith("What flows past the town")
    assert items[2]["context"].count("Document ") > items[0]["context"].count("Document ")  # longer, more documents
    # the eval split's rows only (even lines): never a question or paragraph of the tune split's rows (odd: 3)
    assert all("Dunmore" not in it["context"] and "town 3" not in it["question"] for it in items)


def test_the_bench_on_a_tiny_model(model, tok, model_dir, qa, tmp_path):
    path, held, hay = qa
    cfg = AnswerBenchConfig(model=ModelConfig(model="tiny"), scores=str(model_dir / "scores.json"),
                            methods=["greedy", "cad", "abstain"], max_new_tokens=4, lengths=[160], depths=[0, 50],
                            halueval_items=3, haystack=hay, qa_data=path, heldout=held,
                            params={"abstain": {"refuse_on": "unsupported,partly unsupported"}})
    out = tmp_path / "bench"
    res = run_answer_bench(model, tok, cfg, out, progress=False)
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    recs = [r for r in read_jsonl(out / "answers.jsonl") if r.get("type") == "answer"]
    assert len(recs) == 3 * len(items) and res["n_items"] == len(items)
    by_id = {it["id"]: it for it in items}
    for fam in ("niah", "counterfactual", "halueval", "all"):
        mine = [r for r in recs if fam == "all" or by_id[r["id"]]["family"] == fam]
        for m in ("greedy", "cad", "abstain"):
            rs = [r for r in mine if r["method"] == m]
            fig = res["families"][fam][m]
            assert fig["n"] == len(rs) and fig["accuracy"] == pytest.approx(np.mean([bool(r["correct"]) for r in rs]),
                                                                            abs=1e-4)
            assert fig["hallucination_rate"] == pytest.approx(np.mean([hallucinated(r, by_id[r["id"]]) for r in rs]),
                                                              abs=1e-4)
        g = {r["id"]: r for r in mine if r["method"] == "greedy"}
        cad = [r for r in mine if r["method"] == "cad"]
        want = np.mean([bool(r["correct"]) for r in cad]) - np.mean([bool(g[r["id"]]["correct"]) for r in cad])
        assert res["families"][fam]["cad"]["vs_greedy"]["diff"] == pytest.approx(want, abs=1e-4)
        assert res["natural_errors"][fam]["n"] == len(g)
    assert all(r.get("monitor_baselines", {}).get("mean_logprob") is not None for r in recs if r["new_tokens"])
    assert all(r["monitor_baselines"].get("rauq") is not None for r in recs if r["new_tokens"])  # every head recorded
    assert "rauq" in res["natural_errors"]["all"]["signals"]
    assert (out / "tables.md").read_text().count("### ") == 5 and (out / "risk_coverage.png").exists()
    again = run_answer_bench(model, tok, cfg, out, progress=False)  # resumes: nothing answered again
    assert len([r for r in read_jsonl(out / "answers.jsonl") if r.get("type") == "answer"]) == len(recs)
    assert again["families"] == res["families"]


def _rec(i, method, correct, score, abstained=False, answer="x", seconds=1.0):
    return {"id": f"i{i}", "method": method, "correct": correct, "hallucination_score": score, "abstained": abstained,
            "answer": answer, "generated": answer, "new_tokens": 3, "seconds": seconds,
            "monitor_baselines": {"mean_logprob": -score, "mean_entropy": score, "rauq": 1.0 - score}}


def test_evaluation_on_hand_made_records():
    N = 12  # (the AUROC needs 5 of each class)
    items = [{"id": f"i{i}", "family": "niah", "answers": ["yes"], "common": None} for i in range(N)]
    good = [bool(i % 2) for i in range(N)]  # the odd ones right
    recs = [_rec(i, "greedy", good[i], 0.1 if good[i] else 0.9, answer="yes" if good[i] else "no") for i in range(N)]
    recs += [_rec(i, "abstain", good[i], 0.1 if good[i] else 0.9, abstained=not good[i],
                  answer="yes" if good[i] else "I cannot answer.", seconds=2.0) for i in range(N)]
    for r in recs:
        if r["method"] == "abstain" and r["abstained"]:
            r["generated"] = "no"
    ev = evaluate(recs, items, ["greedy", "abstain"])
    a = ev["families"]["niah"]["abstain"]
    assert a["abstention_precision"] == 1.0 and a["abstention_recall"] == 1.0 and a["hallucination_rate"] == 0.0
    assert a["time_ratio"] == 2.0 and ev["families"]["niah"]["greedy"]["hallucination_rate"] == 0.5
    assert ev["natural_errors"]["niah"]["signals"]["monitor"]["auroc"] == 1.0  # the score separates them
    assert ev["natural_errors"]["niah"]["signals"]["rauq"]["auroc"] == 0.0  # RAUQ read from the baselines
    rc = risk_coverage([r for r in recs if r["method"] == "greedy"])
    assert rc[4]["selective_accuracy"] == 1.0 and rc[-1]["selective_accuracy"] == 0.5  # the lowest half is right
    cf = {"id": "c", "family": "counterfactual", "answers": ["Osaka"], "common": "Tokyo"}
    assert hallucinated({"abstained": False, "answer": "Tokyo.", "correct": False}, cf)
    assert not hallucinated({"abstained": False, "answer": "I don't know.", "correct": False}, cf)
