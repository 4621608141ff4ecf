"""Prompts, evaluation (batching, resume, summary) and the cot experiment on a tiny random model with an
offline tokenizer. Accuracies are ~0 on a random model: the files, their schema and resumption are tested."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.capture.controller import AttentionController
from retrieval_heads.config import ModelConfig
from retrieval_heads.studies.copyshare import copy_events
from retrieval_heads.studies.cot import CotConfig, format_table, run_cot_experiment, runs_of
from retrieval_heads.errors import RHeadsError
from retrieval_heads.evals.taskeval import EvalConfig, format_summary, run_eval
from retrieval_heads.capture.decoding import generate_batch
from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.evals.tasks.loading import load_exemplars, load_items
from retrieval_heads.evals.tasks.prompts import build_prompt
from retrieval_heads.evals.tasks.registry import INSTRUCTIONS, get_task
from tiny import COMMON, bpe_tokenizer

GSM = [
    {"question": "Janet has 16 eggs and eats 3. How many are left?", "answer": "16 - 3 = <<16-3=13>>13\n#### 13"},
    {"question": "A pen costs $2. How much do 6 pens cost?", "answer": "6 * 2 = <<6*2=12>>12\n#### 12"},
    {"question": "Tim reads 5 pages a day. How many pages in 4 days?", "answer": "5 * 4 = 20\n#### 20"},
    {"question": "A box holds 9 apples. Sam eats 2. How many remain?", "answer": "9 - 2 = 7\n#### 7"},
]

# ------------------------------------------------------------------------------------------- tiny model + tokenizer


def _corpus() -> list[str]:
    texts = list(INSTRUCTIONS.values()) + ["Question: Answer: The answer is"]
    for name in ("vartrack", "wordproblems"):
        texts += [f"{it.question} {it.solution}" for it in load_items(get_task(name), limit=40, steps=3)]
    texts += [f"{it.question} {' '.join(it.answers)}" for it in load_items(get_task("closedbook-facts"))]
    texts += [f"{e.question} {e.solution} {' '.join(e.answers)}" for t in ("gsm8k", "closedbook-facts")
              for e in get_task(t).exemplars]
    texts += [f"{r['question']} {r['answer']}" for r in GSM]
    return texts


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model gains nothing from threads; on a loaded machine they only wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return bpe_tokenizer(_corpus(), 500, byte_alphabet=False)  # every token decodes to readable ASCII


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok), "max_position_embeddings": 1024}, num_key_value_heads=2,
                      bos_token_id=0, eos_token_id=1)
    return use_rheads(AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).eval())


@pytest.fixture()
def gsm_file(tmp_path) -> str:
    p = tmp_path / "gsm.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in GSM))
    return str(p)


def _scores_file(tmp_path) -> str:
    s = HeadScores(3, 4, {(l, h): [0.5 if (l, h) in {(1, 2), (2, 0)} else 0.01 * h] for l in range(3) for h in range(4)})
    path = tmp_path / "scores.json"
    s.save(path)
    return str(path)


def _items(out: Path) -> list[dict]:
    return [r for r in read_jsonl(out / "items.jsonl") if r.get("type") == "item"]


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


# ------------------------------------------------------------------------------------------- prompts


def test_plain_prompt_and_question_span(tok):
    spec = get_task("vartrack")
    item = load_items(spec, limit=1, steps=3)[0]
    shots = load_exemplars(spec, 2, steps=3)
    p = build_prompt(tok, item, "cot", shots, chat=False)
    assert p.text.startswith(INSTRUCTIONS["cot"]) and p.text.endswith(f"Question: {item.question}\nAnswer:")
    assert p.text.count("The answer is") == 3  # two worked exemplars + the instruction
    assert p.input_ids[0] == tok.bos_token_id and p.input_ids[1] != tok.bos_token_id
    a, b = p.question_span
    assert tok.decode(p.input_ids[a:b]).strip() == item.question
    direct = build_prompt(tok, item, "direct", shots, chat=False)
    assert f"Answer: {shots[0].answers[0]}\n" in direct.text and "The answer is" not in direct.text


def test_chat_prompt(tok, gsm_file):
    chat_tok = tok.__class__(tokenizer_object=tok.backend_tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    chat_tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                              "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    spec = get_task("gsm8k")
    item = load_items(spec, gsm_file, limit=1)[0]
    p = build_prompt(chat_tok, item, "cot", load_exemplars(spec, 2), chat=True)
    assert p.text.count("<|user|>") == 3 and p.text.count("<|assistant|>") == 3 and p.text.endswith("<|assistant|>")
    assert "The answer is 7." in p.text  # the second inline exemplar's worked solution
    a, b = p.question_span
    assert tok.decode(p.input_ids[a:b]).strip() == item.question


# ------------------------------------------------------------------------------------------- evaluation


def _vt(**kw) -> EvalConfig:
    return EvalConfig(model=ModelConfig(model="tiny-llama"), **{"task": "vartrack", "limit": 5, "shots": 1,
                                                                "mode": "cot", "max_new_tokens": 10, **kw})


def test_batch_size_does_not_change_generations(model, tok, tmp_path):
    runs = {}
    for bs in (1, 3):
        run_eval(model, tok, _vt(), tmp_path / f"b{bs}", batch_size=bs, progress=False)
        runs[bs] = _strip(_items(tmp_path / f"b{bs}"))
    assert runs[1] == runs[3]
    assert len({r["generation"] for r in runs[1]}) > 1  # not trivially equal
    spec = get_task("vartrack")
    prompts = [build_prompt(tok, it, "direct", [], chat=False).input_ids for it in load_items(spec, limit=3)]
    ctl = AttentionController(ablate={1: [0, 3]}, mode="uniform")  # masked, too
    one = [generate_batch(model, [p], 6, [1], ctl, 1)[0] for p in prompts]
    assert generate_batch(model, prompts, 6, [1], ctl, 1) == one


def test_eval_outputs_and_summary(model, tok, tmp_path, gsm_file):
    out = tmp_path / "gsm"
    cfg = EvalConfig(model=ModelConfig(model="tiny-llama"), task="gsm8k", data=gsm_file, mode="direct", shots=2)
    summary = run_eval(model, tok, cfg, out, batch_size=2, progress=False)
    recs = _items(out)
    assert len(recs) == 4 and [r["index"] for r in recs] == [0, 1, 2, 3]
    for r in recs:
        assert {"id", "question", "answers", "prompt", "generation", "extracted", "correct"} <= set(r)
        assert r["prompt"].endswith(f"Question: {r['question']}\nAnswer:") and r["new_tokens"] <= 16
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["n"] == 4 and on_disk["accuracy"] == sum(r["correct"] for r in recs) / 4 == summary["accuracy"]
    assert 0.0 <= on_disk["accuracy"] <= 1.0 and on_disk["version"] == 1
    assert on_disk["mode"] == "direct" and on_disk["mask"] == "none" and on_disk["masked_heads"] == ""
    cfg_json = json.loads((out / "config.json").read_text())
    assert cfg_json["config"]["max_new_tokens"] == 16 and cfg_json["config"]["shots"] == 2  # resolved defaults
    assert "accuracy" in format_summary(summary)
    assert json.loads((tmp_path / "gsm" / "items.jsonl").read_text().splitlines()[0])["type"] == "header"


def test_summary_bounds_what_the_token_limit_cost():
    from retrieval_heads.evals.taskeval import eval_summary as summarize

    def rec(correct, cut):
        return {"correct": correct, "cut_off": cut, "extracted": "1", "new_tokens": 8, "seconds": 0.1}

    records = [rec(True, False), rec(False, False), rec(False, True), rec(True, True), rec(False, False)]
    s = summarize(records, EvalConfig(model=ModelConfig(model="tiny-llama"), task="gsm8k", max_new_tokens=8), [], None)
    assert s["n_cut_off"] == 2 and s["cut_off_share"] == 0.4 and s["n_cut_off_correct"] == 1
    assert s["accuracy"] == 0.4 and s["accuracy_uncut"] == pytest.approx(1 / 3, abs=1e-6)  # 1 right of 3 uncut
    assert s["accuracy_cut_right"] == 0.6  # the uncut right one and both cut ones
    none_cut = summarize(records[:2], EvalConfig(model=ModelConfig(model="tiny-llama"), task="gsm8k"), [], None)
    assert none_cut["accuracy_uncut"] == none_cut["accuracy_cut_right"] == none_cut["accuracy"] == 0.5


def test_resume_gives_the_same_records(model, tok, tmp_path):
    cfg = _vt(mask="heads:0-1,2-3", ablation="uniform")
    full = run_eval(model, tok, cfg, tmp_path / "full", batch_size=3, progress=False)
    out = tmp_path / "killed"
    run_eval(model, tok, cfg, out, batch_size=3, progress=False)
    lines = (out / "items.jsonl").read_text().splitlines(keepends=True)
    kept = lines[:3]  # header + 2 items, then a torn write, as a killed run leaves it
    (out / "items.jsonl").write_text("".join(kept) + lines[3][:30])
    (out / "summary.json").unlink()
    resumed = run_eval(model, tok, cfg, out, batch_size=2, progress=False)  # the batch size may change
    recs = _items(out)
    assert _strip(recs) == _strip(_items(tmp_path / "full"))
    assert [r["seconds"] for r in recs[:2]] == [json.loads(line)["seconds"] for line in kept[1:]]  # not rerun
    drop = lambda s: {k: v for k, v in s.items() if k not in ("seconds", "batch_size")}  # noqa: E731
    assert drop(resumed) == drop(full) and resumed["masked_heads"] == "0-1,2-3" and resumed["n_masked"] == 2


def test_rerun_with_other_config_is_refused(model, tok, tmp_path):
    run_eval(model, tok, _vt(limit=2, max_new_tokens=2), tmp_path, progress=False)
    with pytest.raises(RHeadsError, match="different config"):
        run_eval(model, tok, _vt(limit=2, max_new_tokens=3), tmp_path, progress=False)
    with pytest.raises(RHeadsError, match="different config"):
        run_eval(model, tok, _vt(limit=2, max_new_tokens=2, steps=4), tmp_path, progress=False)


def test_masks_and_mean_mode(model, tok, tmp_path):
    scores = _scores_file(tmp_path)
    s = run_eval(model, tok, _vt(limit=2, max_new_tokens=3, mask="top:2", scores=scores), tmp_path / "top",
                 progress=False)
    assert s["masked_heads"] == "1-2,2-0"
    s = run_eval(model, tok, _vt(limit=2, max_new_tokens=3, mask="random:3", scores=scores, mask_seed=1),
                 tmp_path / "rand", progress=False)
    assert s["n_masked"] == 3 and not {"1-2", "2-0"} & set(s["masked_heads"].split(","))
    s = run_eval(model, tok, _vt(limit=3, max_new_tokens=3, mask="heads:1-0,1-1", ablation="mean", mean_ref_prompts=2),
                 tmp_path / "mean", progress=False)
    assert s["mean_reference"]["n_prompts"] == 2 and s["ablation"] == "mean"
    with pytest.raises(RHeadsError, match="needs head scores"):
        run_eval(model, tok, _vt(mask="top:2"), tmp_path / "x", progress=False)
    with pytest.raises(RHeadsError, match="exceeds the model's context"):
        run_eval(model, tok, _vt(max_new_tokens=5000), tmp_path / "y", progress=False)


def test_closedbook_eval(model, tok, tmp_path):
    cfg = EvalConfig(model=ModelConfig(model="tiny-llama"), task="closedbook-facts", limit=3, max_new_tokens=4)
    s = run_eval(model, tok, cfg, tmp_path, batch_size=3, progress=False)
    assert s["n"] == 3 and s["mode"] == "closedbook"
    assert _items(tmp_path)[0]["answers"] == ["Paris"]


# ------------------------------------------------------------------------------------------- copy analysis


def test_copy_events_by_hand():
    prompt = [10, 11, 12, 13, 14]  # question span [1, 4): tokens 11, 12, 13
    gen = torch.tensor([12, 20, 20, 11, 10, 1])
    top1 = torch.tensor([  # [T=6, L=1, H=2]
        [[2, 4]],  # 12 (in the question): head 0 looks at 12 in the question -> copies; head 1 at 14 -> no
        [[0, 1]],  # 20: new token, not a repeat
        [[6, 0]],  # 20 again (earlier step): head 0 looks at position 6 = gen[1] = 20 -> copies
        [[0, 1]],  # 11 (question): head 1 looks at 11 -> copies
        [[0, 0]],  # 10 occurs in the prompt only outside the question span: not a repeat
        [[7, 7]],  # EOS: skipped
    ])
    ev = copy_events(top1, prompt, gen, (1, 4), skip={1})
    assert ev == {"n_tokens": 6, "sources": ["q", "s", "q"], "copiers": [[0], [0], [1]]}


def _cot_config(tmp_path, **kw) -> CotConfig:
    base = dict(ks=[0, 2], random_seeds=2, task="vartrack", limit=3, shots=1, closedbook_limit=3, closedbook_shots=1,
                max_new_tokens_cot=8, max_new_tokens_direct=3, max_new_tokens_closedbook=3, copy_items=2)
    return CotConfig(model=ModelConfig(model="tiny-llama"), scores=_scores_file(tmp_path), **{**base, **kw})


def test_cot_experiment_end_to_end(model, tok, tmp_path):
    cfg = _cot_config(tmp_path)
    out = tmp_path / "exp"
    summary = run_cot_experiment(model, tok, cfg, out, batch_size=3, progress=False)
    on_disk = json.loads((out / "summary.json").read_text())
    results = on_disk["results"]
    assert [(r["mode"], r["mask"], r["k"]) for r in results] == [
        (m, mask, k) for m in ("cot", "direct", "closedbook") for mask, k in (("none", 0), ("top", 2), ("random", 2))]
    for r in results:
        assert {"task", "mode", "mask", "k", "accuracy", "n"} <= set(r)
        assert r["task"] == ("closedbook-facts" if r["mode"] == "closedbook" else "vartrack") and r["n"] == 3
        assert 0.0 <= r["accuracy"] <= 1.0
        if r["mask"] == "random":  # the mean over the seeds' runs
            accs = [json.loads((out / r["mode"] / f"random-k2-seed{s}" / "summary.json").read_text())["accuracy"]
                    for s in (0, 1)]
            assert r["accuracy_seeds"] == accs and r["accuracy"] == pytest.approx(sum(accs) / 2)
    assert len(runs_of(cfg)) == 12 and sorted(on_disk["runs"]) == sorted(r.name for _, r in runs_of(cfg))
    top = json.loads((out / "cot" / "top-k2" / "summary.json").read_text())
    assert top["masked_heads"] == "1-2,2-0"
    for f in ("config.json", "drop.png", "copy_share.json", "copy_share.png", "copy_share.jsonl"):
        assert (out / f).exists(), f
    share = json.loads((out / "copy_share.json").read_text())
    recs = [r for r in read_jsonl(out / "copy_share.jsonl") if r.get("type") == "item"]
    assert share["n_items"] == len(recs) == 2 and share["n_retrieval_heads"] == 2
    assert share["n_repeat"] == sum(len(r["copiers"]) for r in recs)
    assert len(share["head_copy_rate"]) == 12 and len(share["random_matched_seeds"]) == 2
    for key in ("retrieval", "random_matched", "all_other"):
        assert share[key] is None or 0.0 <= share[key] <= 1.0
    table = format_table(summary)
    assert "top" in table and "random" in table and "cut off" in table and "95% CI" in table and "cut=right" in table
    for r in results:  # the bounds bracket the accuracy
        assert r["accuracy_uncut"] is None or 0.0 <= r["accuracy_uncut"] <= 1.0
        assert r["accuracy"] <= r["accuracy_cut_right"] <= 1.0
    again = run_cot_experiment(model, tok, cfg, out, batch_size=2, progress=False)  # all done: resumes
    assert again["results"] == summary["results"] and again["copy_share"] == summary["copy_share"]


def test_cot_experiment_split_across_processes(model, tok, tmp_path):
    """--only runs disjoint parts into one dir, each summarizing what has finished; the run without it then only
    summarizes, as one whole run would."""
    cfg = _cot_config(tmp_path, ks=[0, 2], random_seeds=1)
    parts = [r.name for _, r in runs_of(cfg)]
    with pytest.raises(RHeadsError, match="not a part of this experiment"):
        run_cot_experiment(model, tok, cfg, tmp_path / "split", only=["cot/top-k3"], progress=False)
    with pytest.raises(RHeadsError, match="names no part"):
        run_cot_experiment(model, tok, cfg, tmp_path / "split", only=[], progress=False)
    split = tmp_path / "split"
    half = run_cot_experiment(model, tok, cfg, split, only=parts[::2], progress=False)
    assert half["missing"] == parts[1::2] and "copy_share" not in half
    assert {(r["mode"], r["mask"]) for r in half["results"]} <= {(p.split("/")[0], m) for p in parts[::2]
                                                                  for m in ("none", "top", "random")}
    rest = run_cot_experiment(model, tok, cfg, split, only=parts[1::2] + ["copy"], progress=False)
    assert rest["missing"] == [] and (split / "copy_share.json").exists()
    assert all((split / sub / "summary.json").exists() for sub in parts)
    stamps = {sub: (split / sub / "items.jsonl").stat().st_mtime_ns for sub in parts}
    summary = run_cot_experiment(model, tok, cfg, split, progress=False)
    assert stamps == {sub: (split / sub / "items.jsonl").stat().st_mtime_ns for sub in parts}  # nothing rerun
    whole = run_cot_experiment(model, tok, cfg, tmp_path / "whole", progress=False)
    assert summary["results"] == whole["results"] and summary["copy_share"] == whole["copy_share"]


def test_cot_experiment_refuses_bad_input_before_running(model, tok, tmp_path):
    with pytest.raises(RHeadsError, match="only 10"):
        run_cot_experiment(model, tok, _cot_config(tmp_path, ks=[0, 11]), tmp_path / "x", progress=False)
    bad = _cot_config(tmp_path)
    bad.task = "closedbook-facts"
    with pytest.raises(RHeadsError, match="needs cot and direct"):
        run_cot_experiment(model, tok, bad, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def parse_ks_(spec):
    from retrieval_heads.cli.common import parse_ks
    from retrieval_heads.cli.tasks import _DEFAULT_KS

    return parse_ks(spec, _DEFAULT_KS)


def test_cli_parsers():
    from retrieval_heads.cli.tasks import add_parsers

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["eval", "--model", "qwen2.5-coder-0.5b", "--task", "gsm8k", "--data", "x.jsonl",
                           "--limit", "200", "--cot", "--out", "runs/cot"])
    assert (a.task, a.data, a.limit, a.cot, a.mask, a.ablation, a.batch_size) == \
        ("gsm8k", "x.jsonl", 200, True, "none", "zero", None)
    a = parser.parse_args(["eval", "--task", "closedbook-facts", "--mask", "top:20", "--scores", "s.json"])
    assert (a.mask, a.scores) == ("top:20", "s.json")
    a = parser.parse_args(["cot-experiment", "--scores", "s.json", "--k", "0,10,20,50", "--random-seeds", "3"])
    assert parse_ks_(a.k) == [0, 10, 20, 50] and a.random_seeds == 3 and a.copy_items == 20 and a.limit == 200
    assert a.only is None
    assert parser.parse_args(["cot-experiment", "--only", "cot/top-k20,copy"]).only == "cot/top-k20,copy"
    assert parser.parse_args(["tasks"]).command == "tasks"
    with pytest.raises(RHeadsError, match="bad --k"):
        parse_ks_("1,x")
