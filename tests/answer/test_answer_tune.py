"""Variants (`METHOD:TAG`) and `rheads answer tune`: a variant with the method's defaults answers exactly as the
method does, in the same run; the choice follows each method's objective (accuracy; abstain: selective accuracy at
coverage >= 0.8) with ties to the defaults; an eval-split run and a folder without a bench are refused in one line."""

from __future__ import annotations

import json

import pytest

from retrieval_heads.answer.bench.run import AnswerBenchConfig, run_answer_bench
from retrieval_heads.answer.bench.tune import flags, tune
from retrieval_heads.answer.registry import base_name, get_method_class, parse_methods
from retrieval_heads.cli.main import main
from retrieval_heads.config import ModelConfig
from retrieval_heads.errors import ParamError, RHeadsError
from retrieval_heads.io.jsonl import read_jsonl
from answer_helpers import HAYSTACK


def test_variant_names_resolve_to_their_method_and_bad_tags_are_refused():
    assert parse_methods("greedy,copy:k10,copy") == ["greedy", "copy:k10", "copy"]
    assert base_name("copy:k10") == "copy" and get_method_class("copy:k10") is get_method_class("copy")
    for bad in ("copy:", "copy:a.b", "nope:x"):
        with pytest.raises(ParamError):
            get_method_class(bad)
    with pytest.raises(ParamError):
        parse_methods("copy:a,copy:a")


def _bench(model, tok, model_dir, tmp_path, split, methods, params):
    hay = tmp_path / "hay.txt"
    hay.write_text(HAYSTACK)
    cfg = AnswerBenchConfig(model=ModelConfig(model="tiny"), scores=str(model_dir / "scores.json"), methods=methods,
                            params=params, max_new_tokens=4, families=["niah", "counterfactual"], lengths=[160],
                            depths=[0, 50], haystack=str(hay), split=split)
    out = tmp_path / f"bench-{split}"
    run_answer_bench(model, tok, cfg, out, progress=False)
    return out


def test_a_default_variant_answers_as_its_method_and_tune_picks_by_the_objective(model, tok, model_dir, tmp_path):
    out = _bench(model, tok, model_dir, tmp_path, "tune", ["greedy", "copy", "copy:same", "copy:k1", "abstain",
                                                         "abstain:all"],
                 {"copy:k1": {"k": "1"}, "abstain:all": {"refuse_on": "supported,partly unsupported,unsupported"}})
    recs = [r for r in read_jsonl(out / "answers.jsonl") if r.get("type") == "answer"]
    by = {(r["id"], r["method"]): r for r in recs}
    ids = sorted({r["id"] for r in recs})
    assert all(by[i, "copy:same"]["answer"] == by[i, "copy"]["answer"] for i in ids)
    assert all(by[i, "copy:k1"]["answer"] == by[i, "greedy"]["answer"] for i in ids)  # k=1 re-ranks nothing
    tuned = tune(out)
    assert json.loads((out / "tuned.json").read_text()) == tuned
    copy = tuned["methods"]["copy"]
    acc = {a: sum(bool(by[i, a]["correct"]) for i in ids) / len(ids) for a in ("copy", "copy:same", "copy:k1")}
    best = max(acc.values())
    assert copy["value"] == pytest.approx(best, abs=1e-4)
    if acc["copy"] == best:  # a tie goes to the defaults (copy and copy:same both hold them: the first listed)
        assert copy["arm"] == "copy" and copy["params"] == get_method_class("copy")().settings()
    else:
        assert copy["arm"] == "copy:k1" and "--param copy.k=1" in flags(tuned)
    ab = tuned["methods"]["abstain"]
    assert ab["arms"]["abstain:all"]["coverage"] < 0.8 and ab["arms"]["abstain:all"]["value"] is None
    assert tuned["methods"]["greedy"]["arm"] == "greedy"
    lines = (out / "answers.jsonl").read_text().splitlines(keepends=True)  # an arm an unfinished run added
    first = next(i for i, x in enumerate(lines) if '"method": "copy:k1"' in x)
    (out / "answers.jsonl").write_text("".join(lines[:first] + lines[first + 1:]))
    with pytest.raises(RHeadsError, match="copy:k1 has answered"):
        tune(out)


def test_tune_refuses_an_eval_run_and_a_folder_without_a_bench(model, tok, model_dir, tmp_path, capsys):
    out = _bench(model, tok, model_dir, tmp_path, "eval", ["greedy"], {})
    assert main(["answer", "tune", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--split tune" in err and not (out / "tuned.json").exists()
    assert main(["answer", "tune", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no bench.json" in err
