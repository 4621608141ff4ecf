"""extend-cut: rerunning the cut answers with a higher limit gives what a run at that limit gives (the oracle:
the whole run made again at the higher limit), for one eval run and for a cot-experiment's masked runs."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from retrieval_heads.cli.main import build_parser
from retrieval_heads.config import ModelConfig
from retrieval_heads.errors import RHeadsError
from retrieval_heads.studies.cot import CotConfig, format_table, run_cot_experiment
from retrieval_heads.evals.taskeval import EvalConfig, prepare, run_eval
from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.studies.extend import check_extend, extend_experiment, extend_run, format_extended
from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.capture.controller import AttentionController
from retrieval_heads.capture.decoding import generate_batch
from retrieval_heads.viz.report.experiments import cot_note, cot_table, load_sweep
from evals.test_eval import _items, _scores_file, one_thread, tok  # noqa: F401 (fixtures: one thread, the tiny tokenizer)
from tiny import COMMON

N, M = 7, 14  # the run's limit and the extended one
KEYS = ("id", "generation", "extracted", "correct", "new_tokens", "ended", "cut_off")


def _config(**kw) -> EvalConfig:
    return EvalConfig(model=ModelConfig(model="tiny-llama"), **{"task": "vartrack", "limit": 8, "shots": 1,
                                                                "mode": "cot", "max_new_tokens": N, **kw})


@pytest.fixture(scope="module")
def model(tok):
    """A tiny random Llama whose end token is chosen so that, at limit N, some answers end and some are cut, and
    at limit M some of the cut ones end and some are cut again (a random model rarely ends on its own)."""
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**COMMON, "vocab_size": len(tok), "max_position_embeddings": 1024}, num_key_value_heads=2,
                      bos_token_id=0, eos_token_id=1)
    model = use_rheads(AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).eval())
    _, prompts = prepare(tok, _config(max_new_tokens=M).resolved())
    gens = [g.tokens for g in generate_batch(model, [p.input_ids for p in prompts], M, [1], AttentionController(), 1)]

    def fits(t: int) -> bool:
        first = [g.index(t) if t in g else None for g in gens]
        return (any(f is not None and f < N - 1 for f in first) and any(f is not None and N <= f < M - 1 for f in first)
                and any(f is None for f in first))

    end = next((t for t in range(2, len(tok)) if fits(t)), None)
    assert end is not None, "no token gives a mix of ended and cut answers: change the tiny model's seed"
    model.generation_config.eos_token_id = [1, end]
    return model


def _strip(records: list[dict]) -> list[dict]:
    return [{k: r[k] for k in KEYS} for r in records]


def test_extend_run_equals_a_run_at_the_higher_limit(model, tok, tmp_path):
    base = run_eval(model, tok, _config(), tmp_path / "base", batch_size=3, progress=False)
    direct = run_eval(model, tok, _config(max_new_tokens=M), tmp_path / "direct", batch_size=3, progress=False)
    assert 0 < base["n_cut_off"] < base["n"] and 0 < direct["n_cut_off"] < base["n_cut_off"]  # a real mix
    s = extend_run(model, tok, tmp_path / "base", M, tmp_path / "ext", batch_size=2, progress=False)
    assert s == json.loads((tmp_path / "ext" / "summary.json").read_text())
    merged = {r["id"]: r for r in _items(tmp_path / "ext" / "rerun")}
    base_items = _items(tmp_path / "base")
    assert sorted(merged) == sorted(r["id"] for r in base_items if r["cut_off"])  # only the cut ones were rerun
    merged = [merged.get(r["id"], r) for r in base_items]
    assert _strip(merged) == _strip(_items(tmp_path / "direct"))
    for key in ("accuracy", "ci95", "n", "n_correct", "n_cut_off", "cut_off_share", "accuracy_uncut",
                "accuracy_cut_right", "item_correct", "mean_new_tokens"):
        assert s[key] == direct[key], key
    assert s["config"]["max_new_tokens"] == M and s["config"]["only_ids"] is None
    e = s["extended"]
    assert (e["from_max_new_tokens"], e["max_new_tokens"], e["n_rerun"]) == (N, M, base["n_cut_off"])
    assert e["n_rerun_ended"] == base["n_cut_off"] - direct["n_cut_off"]
    assert e["n_rerun_correct"] == direct["n_cut_off_correct"] + sum(
        r["correct"] for r in merged if r["id"] in {x["id"] for x in base_items if x["cut_off"]} and not r["cut_off"])
    again = extend_run(model, tok, tmp_path / "base", M, tmp_path / "ext", progress=False)  # resumes: nothing new
    assert again["accuracy"] == s["accuracy"] and len(_items(tmp_path / "ext" / "rerun")) == base["n_cut_off"]


def test_extend_run_refuses_what_it_cannot_merge(model, tok, tmp_path):
    run_eval(model, tok, _config(), tmp_path / "base", batch_size=4, progress=False)
    with pytest.raises(RHeadsError, match="not above the run's limit"):
        extend_run(model, tok, tmp_path / "base", N, tmp_path / "x", progress=False)
    with pytest.raises(RHeadsError, match="not a finished"):
        extend_run(model, tok, tmp_path / "nothing", M, tmp_path / "x", progress=False)
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "base", other)
    meta = json.loads((other / "config.json").read_text())
    meta["model_key"]["dtype"] = "torch.bfloat16"
    (other / "config.json").write_text(json.dumps(meta))
    with pytest.raises(RHeadsError, match="load the run's model with its dtype"):
        extend_run(model, tok, other, M, tmp_path / "x", progress=False)
    scores = _scores_file(tmp_path)
    run_eval(model, tok, _config(mask="top:2", scores=scores, ablation="mean"), tmp_path / "mean", progress=False)
    with pytest.raises(RHeadsError, match="mean ablation"):
        extend_run(model, tok, tmp_path / "mean", M, tmp_path / "x", progress=False)
    assert run_eval(model, tok, _config(mask="top:2", scores=scores), tmp_path / "top", progress=False)["n_cut_off"]
    HeadScores(3, 4, {(l, h): [0.9 if (l, h) == (0, 0) else 0.01] for l in range(3) for h in range(4)}).save(scores)
    with pytest.raises(RHeadsError, match="resolves to other heads"):
        extend_run(model, tok, tmp_path / "top", M, tmp_path / "y", progress=False)
    assert not (tmp_path / "y" / "rerun").exists()  # refused before decoding anything
    with pytest.raises(RHeadsError, match="there is no item"):
        prepare(tok, replace(_config(), only_ids=[]).resolved())
    with pytest.raises(RHeadsError, match="not among the task's items"):
        prepare(tok, replace(_config(), only_ids=["0", "99"]).resolved())


def test_extend_experiment_matches_masked_runs_at_the_higher_limit(model, tok, tmp_path):
    scores = _scores_file(tmp_path)
    cfg = CotConfig(model=ModelConfig(model="tiny-llama"), scores=scores, ks=[0, 2], random_seeds=1, modes=["cot"],
                    task="vartrack", limit=8, shots=1, max_new_tokens_cot=N, copy_items=0)
    run_cot_experiment(model, tok, cfg, tmp_path / "exp", batch_size=4, progress=False)
    with pytest.raises(RHeadsError, match="not a part"):
        extend_experiment(model, tok, tmp_path / "exp", M, tmp_path / "ext", only=["cot/top-k3"], progress=False)
    with pytest.raises(RHeadsError, match="not above the run's limit"):  # every part is checked before out is claimed
        extend_experiment(model, tok, tmp_path / "exp", N, tmp_path / "ext", progress=False)
    assert not (tmp_path / "ext").exists()
    with pytest.raises(RHeadsError, match="not above the run's limit"):  # and before a model loads, in the CLI
        check_extend(tmp_path / "exp", N)
    check_extend(tmp_path / "exp", M, only=["cot/top-k2"])
    s = extend_experiment(model, tok, tmp_path / "exp", M, tmp_path / "ext", batch_size=4, progress=False)
    assert sorted(s["runs"]) == ["cot/k0-baseline", "cot/random-k2-seed0", "cot/top-k2"] and not s["missing"]
    assert s["extend_config"] == {"run": str(tmp_path / "exp"), "max_new_tokens": M}
    for name, mask, seed in (("top-k2", "top:2", 0), ("random-k2-seed0", "random:2", 0)):
        direct = run_eval(model, tok, _config(mask=mask, scores=scores, mask_seed=seed, max_new_tokens=M),
                          tmp_path / name, batch_size=4, progress=False)
        ext = json.loads((tmp_path / "ext" / "cot" / name / "summary.json").read_text())
        assert ext["masked_heads"] == direct["masked_heads"] != ""
        assert ext["item_correct"] == direct["item_correct"] and ext["n_cut_off"] == direct["n_cut_off"]
        row = next(r for r in s["results"] if r["mask"] == mask.split(":")[0])
        assert row["accuracy"] == direct["accuracy"] and row["cut_off_share"] == direct["cut_off_share"]
    table = format_table(s) + "\n" + format_extended(s)
    assert "cot/top-k2" in table and "cut off" in table
    sweep = load_sweep(tmp_path / "ext", "cot", tmp_path)  # the report reads it as a cot-experiment
    assert f"rerun with {M} new tokens" in cot_note(sweep) and len(cot_table(sweep)) == 3 and sweep.figure.exists()


def test_cli_parser():
    a = build_parser().parse_args(["extend-cut", "runs/x", "--max-new-tokens", "1024", "--only", "cot/top-k20"])
    assert (a.run, a.max_new_tokens, a.only, a.out) == ("runs/x", 1024, "cot/top-k20", "runs/extend-cut")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["extend-cut", "runs/x"])  # the new limit is required
