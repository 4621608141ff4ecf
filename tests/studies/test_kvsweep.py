"""NIAH with a KV policy and the kv-sweep, on a tiny random Llama with an offline tokenizer; SmolLM2 integration
tests (marked) for the CLI errors and the real model's exactness."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from retrieval_heads.config import ModelConfig, ProbeConfig
from retrieval_heads.errors import ParamError, RHeadsError
from retrieval_heads.studies.kvsweep import (KVSweepConfig, add_diffs, format_table, matched_recent, paired_diff,
                                                plan_arms, run_kv_sweep)
from retrieval_heads.evals.niah import NiahConfig, run_niah
from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.probes.needles import get_needles
from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.kvcache.cache import expected_bytes, full_cache_bytes
from retrieval_heads.kvcache.config import KVConfig
from retrieval_heads.kvcache.policies.random import RandomPolicy
from retrieval_heads.kvcache.policies.retrieval import RetrievalPolicy
from tiny import COMMON, bpe_tokenizer, word_haystack

HAYSTACK = word_haystack(200)


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    needle_text = [f"{n.needle} {n.question}" for n in get_needles("eval")]
    template = ("<context> </context> Based only on the context above, answer the question in a short sentence. "
                "Question: Answer:")
    return bpe_tokenizer([HAYSTACK, template, *needle_text], vocab_size=800)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok)}, num_key_value_heads=2, bos_token_id=0, eos_token_id=1)
    return use_rheads(AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).eval())


@pytest.fixture(scope="module")
def haystack_file(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("hay") / "hay.txt"
    p.write_text(HAYSTACK)
    return str(p)


@pytest.fixture(scope="module")
def scores_file(tmp_path_factory) -> str:
    # three retrieval heads: KV heads (0, 0), (1, 1), (2, 0) stay full under the retrieval policy
    s = HeadScores(3, 4, {(l, h): [0.5 if (l, h) in {(0, 1), (1, 2), (2, 0)} else 0.01 * h] for l in range(3)
                          for h in range(4)})
    path = tmp_path_factory.mktemp("scores") / "scores.json"
    s.save(path)
    return str(path)


def _probe(haystack_file, lengths=(160, 220), depths=(0, 50, 100)) -> ProbeConfig:
    return ProbeConfig(haystack=haystack_file, needles="eval", lengths=list(lengths), depths=list(depths),
                       needles_per_cell=1)


def _config(haystack_file, **kw) -> NiahConfig:
    return NiahConfig(model=ModelConfig(model="tiny-llama"), probe=_probe(haystack_file), max_new_tokens=6, **kw)


def _samples(out: Path) -> list[dict]:
    return [r for r in read_jsonl(out / "samples.jsonl") if r.get("type") == "sample"]


# ------------------------------------------------------------------------------------------- NIAH with a KV policy


def test_niah_records_kv_bytes(model, tok, haystack_file, scores_file, tmp_path):
    full = run_niah(model, tok, _config(haystack_file), tmp_path / "full", progress=False)
    assert full["kv_policy"] == "full" and full["kv_bytes"] == full["kv_bytes_full"] > 0
    cfg = _config(haystack_file, kv=KVConfig(policy="retrieval", sink=2, recent=16), scores=scores_file)
    ret = run_niah(model, tok, cfg, tmp_path / "ret", progress=False)
    assert ret["kv_policy"] == "retrieval" and ret["kv_recent"] == 16 and "mean_score" in ret
    assert ret["kv_bytes_full"] == full["kv_bytes_full"] and ret["kv_bytes"] < ret["kv_bytes_full"]
    kmap = RetrievalPolicy(scores_file).full_kv_heads(model)
    assert kmap.sum() == 3
    for r in _samples(tmp_path / "ret"):
        T = r["prompt_length"] + r["new_tokens"] - 1
        assert r["kv_bytes"] == expected_bytes(model.config, kmap, T, 2, 16)
        assert r["kv_bytes_full"] == full_cache_bytes(model.config, T)
    from retrieval_heads.cli.kv import kv_line

    assert "retrieval (sink 2, recent 16, full prefill): held at most" in kv_line(ret)
    on_disk = json.loads((tmp_path / "ret" / "summary.json").read_text())
    assert {"kv_policy", "kv_bytes", "kv_bytes_full", "mean_score", "kv_share"} <= set(on_disk)
    assert 0 < on_disk["kv_share"] < 1


def test_niah_with_a_covering_window_answers_as_the_full_cache(model, tok, haystack_file, scores_file, tmp_path):
    run_niah(model, tok, _config(haystack_file), tmp_path / "full", progress=False)
    for kv in ("retrieval", "streaming"):
        cfg = _config(haystack_file, kv=KVConfig(policy=kv, sink=4, recent=300, prefill_chunk=50, prefill="window"),
                      scores=scores_file)
        run_niah(model, tok, cfg, tmp_path / kv, progress=False)
        got, want = _samples(tmp_path / kv), _samples(tmp_path / "full")
        assert [r["response"] for r in got] == [r["response"] for r in want]
        assert [r["kv_bytes"] for r in got] == [r["kv_bytes_full"] for r in want]


def test_old_run_dirs_resume_as_the_full_cache(model, tok, haystack_file, tmp_path):
    """A run dir written before the KV fields existed resumes under the default config (kv=full)."""
    out = tmp_path / "old"
    run_niah(model, tok, _config(haystack_file), out, progress=False)
    meta = json.loads((out / "config.json").read_text())
    del meta["config"]["kv"]
    (out / "config.json").write_text(json.dumps(meta))
    lines = (out / "samples.jsonl").read_text().splitlines()
    old = [lines[0]] + [json.dumps({k: v for k, v in json.loads(l).items() if not k.startswith("kv_")})
                        for l in lines[1:]]
    (out / "samples.jsonl").write_text("\n".join(old) + "\n")
    summary = run_niah(model, tok, _config(haystack_file), out, progress=False)
    assert summary["n_samples"] == 6 and summary["kv_bytes"] == summary["kv_bytes_full"] > 0
    with pytest.raises(RHeadsError, match="different config"):
        run_niah(model, tok, _config(haystack_file, kv=KVConfig(policy="streaming")), out, progress=False)


def test_niah_kv_errors(model, tok, haystack_file, scores_file, tmp_path):
    with pytest.raises(RHeadsError, match="ablation needs the full cache"):
        run_niah(model, tok, _config(haystack_file, kv=KVConfig(policy="retrieval"), scores=scores_file,
                                     mask="heads:0-0"), tmp_path, progress=False)
    with pytest.raises(RHeadsError, match="needs retrieval scores"):
        run_niah(model, tok, _config(haystack_file, kv=KVConfig(policy="random")), tmp_path, progress=False)
    bad = tmp_path / "other.json"
    HeadScores(5, 4, {(l, h): [0.2] for l in range(5) for h in range(4)}).save(bad)
    with pytest.raises(RHeadsError, match="5 layers x 4 heads but the model has 3 x 4"):
        run_niah(model, tok, _config(haystack_file, kv=KVConfig(policy="retrieval"), scores=str(bad)), tmp_path / "x",
                 progress=False)
    with pytest.raises(RHeadsError, match="sink"):
        run_niah(model, tok, _config(haystack_file, kv=KVConfig(policy="streaming", sink=0, recent=0)), tmp_path / "y",
                 progress=False)
    with pytest.raises(RHeadsError, match="kv.prefill window"):
        run_niah(model, tok, _config(haystack_file, kv=KVConfig(policy="streaming", prefill_chunk=64)), tmp_path / "y",
                 progress=False)
    with pytest.raises(RHeadsError, match="lengths_only"):
        run_niah(model, tok, _config(haystack_file, lengths_only=[999]), tmp_path / "y", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# ------------------------------------------------------------------------------------------- kv-sweep


def test_matched_recent_is_the_smallest_window_with_the_budget(model, scores_file):
    kmap = RetrievalPolicy(scores_file).full_kv_heads(model)
    none = np.zeros_like(kmap)
    for tokens, recent in ((200, 8), (1000, 64), (50, 40)):
        r = matched_recent(model, kmap, tokens, 4, recent)
        target = expected_bytes(model.config, kmap, tokens, 4, recent)
        assert expected_bytes(model.config, none, tokens, 4, r) >= target
        assert r == 0 or expected_bytes(model.config, none, tokens, 4, r - 1) < target


def test_kv_sweep(model, tok, haystack_file, scores_file, tmp_path):
    cfg = KVSweepConfig(model=ModelConfig(model="tiny-llama"), probe=_probe(haystack_file, (160, 220), (50,)),
                        scores=scores_file, recent_windows=[16, 8], kv=KVConfig(sink=2), max_new_tokens=4)
    names = [a.name for a in plan_arms(cfg, model)]
    assert names == ["full", "retrieval-r16", "random-r16", "streaming-r16", "streaming-matched-r16",
                     "retrieval-r8", "random-r8", "streaming-r8", "streaming-matched-r8"]
    cfg.recent_windows = [8]  # run one window (the plan above covers the order of several)
    out = tmp_path / "sweep"
    summary = run_kv_sweep(model, tok, cfg, out, progress=False)
    assert summary["missing"] == []
    rows = {r["arm"]: r for r in summary["arms"]}
    assert rows["full"]["kv_share"] == 1.0 and rows["full"]["n_samples"] == 2
    full_cfg = json.loads((out / "full" / "config.json").read_text())["config"]
    assert full_cfg == NiahConfig(model=cfg.model, probe=cfg.probe, max_new_tokens=4, scores=scores_file).to_dict()
    for r in (8,):
        ret, rnd, mat = rows[f"retrieval-r{r}"], rows[f"random-r{r}"], rows[f"streaming-matched-r{r}"]
        assert rnd["kv_share"] == ret["kv_share"] < 1  # the same number of full KV heads: the same bytes
        assert rows[f"streaming-r{r}"]["kv_share"] < ret["kv_share"]
        assert abs(mat["kv_share"] - ret["kv_share"]) < 0.05  # matched per length
        assert set(mat["windows"]) == {"160", "220"} and mat["n_samples"] == 2
    rnd_map = RandomPolicy(scores_file).full_kv_heads(model)
    assert rnd_map.sum() == 3
    assert (out / "budget.png").stat().st_size > 1000 and (out / "heatmaps.png").stat().st_size > 1000
    assert (out / "streaming-matched-r8" / "len160" / "summary.json").exists()
    assert "retrieval-r8" in format_table(summary)
    assert "vs_full" not in rows["full"] and "vs_retrieval" not in rows["retrieval-r8"]
    for arm in ("retrieval-r8", "random-r8", "streaming-matched-r8"):  # paired on the same samples
        assert rows[arm]["vs_full"]["n"] == 2
        assert rows[arm]["vs_full"]["diff"] == pytest.approx(rows[arm]["mean_score"] - rows["full"]["mean_score"],
                                                            abs=0.01)
    assert rows["random-r8"]["vs_retrieval"]["diff"] == pytest.approx(
        rows["random-r8"]["mean_score"] - rows["retrieval-r8"]["mean_score"], abs=0.01)
    again = run_kv_sweep(model, tok, cfg, out, progress=False)  # all done: resumes to the same rows
    assert [r["mean_score"] for r in again["arms"]] == [r["mean_score"] for r in summary["arms"]]
    with pytest.raises(RHeadsError, match="only='retrieval-r4': not a part"):
        run_kv_sweep(model, tok, cfg, out, progress=False, only=["retrieval-r4"])
    with pytest.raises(RHeadsError, match="unknown KV policy"):
        run_kv_sweep(model, tok, KVSweepConfig(policies=["full", "h2o"]), tmp_path / "z", progress=False)


def test_budget_arms(model, tok, haystack_file, scores_file, tmp_path):
    """--budgets adds one arm per budget for every chosen policy that runs at one (a policy that needs one runs only
    there); each keeps at most its budget of the prompt; budget 1 is the full cache; diffs pair with retrieval."""
    cfg = KVSweepConfig(model=ModelConfig(model="tiny-llama"), probe=_probe(haystack_file, (160, 220), (50,)),
                        scores=scores_file, policies=["full", "retrieval", "snapkv", "hybrid"], recent_windows=[8],
                        budgets=[0.25, 1.0], matched_streaming=False, kv=KVConfig(sink=2), max_new_tokens=4)
    names = [a.name for a in plan_arms(cfg, model)]
    assert names == ["full", "retrieval-r8", "retrieval-b0.25", "snapkv-b0.25", "hybrid-b0.25", "retrieval-b1",
                     "snapkv-b1", "hybrid-b1"]
    summary = run_kv_sweep(model, tok, cfg, tmp_path / "sweep", progress=False)
    rows = {r["arm"]: r for r in summary["arms"]}
    assert summary["missing"] == [] and rows["snapkv-b0.25"]["budget"] == 0.25
    for p in ("retrieval", "snapkv", "hybrid"):
        prompt = [json.loads(x) for x in (tmp_path / "sweep" / f"{p}-b0.25" / "samples.jsonl").read_text().splitlines()
                  if '"sample"' in x]
        for r in prompt:  # the prompt's share at most the budget; the 4 new tokens (3 fed back) are all kept
            n, t = r["prompt_length"], r["new_tokens"] - 1
            assert r["kv_bytes"] / r["kv_bytes_full"] <= (0.25 * n + t) / (n + t) + 1e-9
        assert rows[f"{p}-b1"]["mean_score"] == rows["full"]["mean_score"]
    assert rows["snapkv-b0.25"]["vs_retrieval"]["n"] == 2 and "vs_retrieval" not in rows["retrieval-b0.25"]
    assert (tmp_path / "sweep" / "budget.png").stat().st_size > 1000
    with pytest.raises(ParamError, match="runs at a budget"):
        KVSweepConfig(scores=scores_file, policies=["full", "snapkv"]).validate()


def test_a_bad_sweep_writes_nothing_and_the_corrected_one_runs(model, tok, haystack_file, scores_file, tmp_path):
    """Every check runs before --out is written (it was: config.json first, then the long lengths failed, and the
    corrected command was refused as another run's folder)."""
    good = KVSweepConfig(model=ModelConfig(model="tiny-llama"), probe=_probe(haystack_file, (160,), (50,)),
                         scores=scores_file, policies=["full", "streaming"], recent_windows=[8],
                         matched_streaming=False, kv=KVConfig(sink=2), max_new_tokens=3)
    out = tmp_path / "sweep"
    bad = [(dataclasses.replace(good, probe=_probe(haystack_file, (99999,), (50,))), "context"),
           (dataclasses.replace(good, recent_windows=[-1]), "recent_windows=-1"),
           (dataclasses.replace(good, policies=["full", "random"], kv=KVConfig(sink=2, top=40)), "only"),
           (dataclasses.replace(good, scores=str(tmp_path / "none.json")), "no score file"),
           (dataclasses.replace(good, kv=KVConfig(sink=2, prefill_chunk=16)), "kv.prefill window")]
    for cfg, what in bad:
        with pytest.raises(RHeadsError, match=what):
            run_kv_sweep(model, tok, cfg, out, progress=False)
        assert not out.exists()
    with pytest.raises(RHeadsError, match="batch"):
        run_kv_sweep(model, tok, good, out, progress=False, batch_size=0)
    assert not out.exists()
    summary = run_kv_sweep(model, tok, good, out, progress=False)
    assert summary["missing"] == [] and [r["arm"] for r in summary["arms"]] == ["full", "streaming-r8"]


def test_paired_diff_pairs_by_sample_id():
    a = [{"id": "x", "score": 100.0}, {"id": "y", "score": 0.0}, {"id": "z", "score": 50.0}]
    b = [{"id": "y", "score": 100.0}, {"id": "x", "score": 100.0}]  # another order, one sample missing
    d = paired_diff(a, b)
    assert d["n"] == 2 and d["diff"] == -50.0 and d["ci95"][0] <= -50.0 <= d["ci95"][1]
    assert paired_diff(a, [{"id": "w", "score": 1.0}]) is None
    rows = [{"arm": "full", "policy": "full", "recent": None}, {"arm": "retrieval-r8", "policy": "retrieval",
            "recent": 8}, {"arm": "random-r8", "policy": "random", "recent": 8}]
    add_diffs(rows, {"full": b, "retrieval-r8": b, "random-r8": a})
    assert rows[1]["vs_full"]["diff"] == 0.0 and rows[2]["vs_retrieval"]["diff"] == -50.0


def test_cli_parsers_and_one_line_errors(capsys):
    from retrieval_heads.cli.main import build_parser, main

    a = build_parser().parse_args(["niah", "--kv", "retrieval", "--scores", "s.json", "--sink", "2", "--recent", "64",
                                   "--kv-top", "20", "--prefill-chunk", "512"])
    assert (a.kv, a.sink, a.recent, a.kv_top, a.prefill_chunk) == ("retrieval", 2, 64, 20, 512)
    a = build_parser().parse_args(["kv-sweep", "--scores", "s.json", "--recent-windows", "64,128"])
    assert a.recent_windows == "64,128" and a.lengths == "2000,4000,8000"
    for argv, what in ((["niah", "--kv", "streaming", "--sink", "0", "--recent", "0"], "sink + recent >= 1"),
                       (["niah", "--kv", "retrieval"], "needs --scores"),
                       (["kv-sweep", "--scores", "s.json", "--recent-windows", "64,x"], "bad --recent-windows"),
                       (["kv-sweep", "--scores", "s.json", "--policies", "full,lru"],
                        "--policies lru: unknown KV policy")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert what in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------- SmolLM2


@pytest.mark.integration
def test_smollm2_errors_and_exactness(capsys):
    from retrieval_heads.cli.main import main
    from retrieval_heads.models.loading import load_model
    from retrieval_heads.kvcache.cache import RetrievalHeadCache

    root = Path(__file__).parents[2]
    assert main(["niah", "--kv", "retrieval", "--scores", str(root / "docs/runs/qwen/scores.json"),
                 "--lengths", "500", "--depths", "50", "--out", "/tmp/rheads-kv-err"]) == 2
    errs = [l for l in capsys.readouterr().err.splitlines() if "error" in l]  # (stderr also has load progress)
    assert len(errs) == 1 and "24 layers x 14 heads but the model has 30 x 9" in errs[0]
    model, tok = load_model("smollm2-135m")
    ids = torch.tensor([tok("The quick brown fox jumps over the lazy dog. " * 30)["input_ids"]])  # [1, ~300]
    kw = dict(attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False, pad_token_id=0,
              output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        from transformers import DynamicCache

        want = model.generate(ids, cache=DynamicCache(config=model.config), **kw)
        scores = root / "docs/runs/smollm2/scores.json"
        cache = RetrievalHeadCache.from_scores(model, str(scores), sink=4, recent=ids.shape[1] + 8)
        got = model.generate(ids, cache=cache, **kw)
        small = RetrievalHeadCache.from_scores(model, str(scores), sink=4, recent=64)
        model.generate(ids, cache=small, **kw)
    assert torch.equal(got.sequences, want.sequences)
    assert max((a - b).abs().max().item() for a, b in zip(got.logits, want.logits)) <= 1e-4
    T = ids.shape[1] + 5
    assert small.peak_bytes == expected_bytes(model.config, small.full_heads, T, 4, 64)
    assert int(small.full_heads.sum()) == 13  # the 19 retrieval heads sit in 13 of the 90 KV heads

