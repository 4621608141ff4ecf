"""Runs with a KV config on the tiny NIAH model: a policy defined in one file of user code is offered by the CLI
and swept; old run directories with flat `kv_*` fields resume as the same run; a score file is read once per
run; the summary keys are the committed runs' keys."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval_heads.config import ModelConfig
from retrieval_heads.errors import RHeadsError
from retrieval_heads.evals.niah import run_niah
from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.kvcache import KVConfig, policy_names, unregister_policy
from retrieval_heads.kvcache.cache import expected_bytes
from retrieval_heads.kvcache.policies.retrieval import RetrievalPolicy
from retrieval_heads.studies.kvsweep import KVSweepConfig, plan_arms, run_kv_sweep
from studies.test_kvsweep import _config, _probe, _samples, haystack_file, model, scores_file, tok  # noqa: F401

ROOT = Path(__file__).parents[2]

POLICY_FILE = '''"""A KV policy in one file: KV head 0 of every layer keeps every token, the others sink + recent."""
import numpy as np

from retrieval_heads.kvcache import KVPolicy, register_policy


@register_policy("headzero")
class HeadZeroPolicy(KVPolicy):
    help = "KV head 0 of each layer keeps every token, the others sink + recent"

    def full_kv_heads(self, model):
        text = model.config.get_text_config(decoder=True)
        full = np.zeros((text.num_hidden_layers, text.num_key_value_heads), dtype=bool)
        full[:, 0] = True
        return full
'''


@pytest.fixture
def headzero(tmp_path):
    """Import a user module that registers the `headzero` policy (and nothing else); forget it afterwards."""
    (tmp_path / "headzero_policy.py").write_text(POLICY_FILE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("headzero_policy").HeadZeroPolicy
    finally:
        unregister_policy("headzero")
        sys.modules.pop("headzero_policy", None)
        sys.path.remove(str(tmp_path))


def test_a_policy_in_one_file_is_offered_by_the_cli_and_swept(headzero, model, tok, haystack_file, tmp_path):
    from retrieval_heads.cli.main import build_parser

    assert "headzero" in policy_names()
    parser = build_parser()  # built after the registration: its choices include the new policy
    assert parser.parse_args(["niah", "--kv", "headzero"]).kv == "headzero"
    assert "headzero" in parser.parse_args(["kv-sweep"]).policies.split(",")
    assert "headzero" in KVSweepConfig().policies
    cfg = KVSweepConfig(model=ModelConfig(model="tiny-llama"), probe=_probe(haystack_file, (160, 220), (50,)),
                        policies=["full", "headzero"], recent_windows=[8], matched_streaming=False,
                        kv=KVConfig(sink=2), max_new_tokens=3)
    assert [a.name for a in plan_arms(cfg, model)] == ["full", "headzero-r8"]
    summary = run_kv_sweep(model, tok, cfg, tmp_path / "sweep", progress=False)
    rows = {r["arm"]: r for r in summary["arms"]}
    row = rows["headzero-r8"]
    assert summary["missing"] == [] and row["policy"] == "headzero" and row["n_samples"] == 2
    kmap = headzero().full_kv_heads(model)
    for r in _samples(tmp_path / "sweep" / "headzero-r8"):
        assert r["kv_bytes"] == expected_bytes(model.config, kmap, r["prompt_length"] + r["new_tokens"] - 1, 2, 8)
    assert 0 < rows["headzero-r8"]["kv_share"] < 1 and rows["headzero-r8"]["vs_full"]["n"] == 2
    assert (tmp_path / "sweep" / "budget.png").stat().st_size > 1000


def test_a_score_file_is_read_once_per_run(model, tok, haystack_file, scores_file, tmp_path, monkeypatch):
    reads: list[str] = []
    load = HeadScores.load.__func__

    monkeypatch.setattr(HeadScores, "load", classmethod(lambda cls, path: reads.append(str(path)) or load(cls, path)))
    policy = RetrievalPolicy(scores_file)
    maps = [policy.full_kv_heads(model) for _ in range(3)]
    assert reads == [scores_file] and all(np.array_equal(m, maps[0]) for m in maps)
    reads.clear()
    run_niah(model, tok, _config(haystack_file, kv=KVConfig(policy="random", sink=2, recent=8), scores=scores_file),
             tmp_path / "run", progress=False)  # 6 samples, one batch each, and the summary
    assert reads == [scores_file]


def test_summary_keys_are_the_committed_runs(model, tok, haystack_file, scores_file, tmp_path):
    committed = {"full": "full", "retrieval": "retrieval-r64", "random": "random-r256",
                 "streaming": "streaming-matched-r64/len2000"}
    for policy, run in committed.items():
        old = json.loads((ROOT / "docs/runs/kv-sweep-smollm2" / run / "summary.json").read_text())
        new = run_niah(model, tok, _config(haystack_file, kv=KVConfig(policy=policy, sink=2, recent=8),
                                           scores=scores_file), tmp_path / policy, progress=False)
        kv_keys = lambda s: [k for k in s if k.startswith("kv_") or k in ("full_kv_heads", "kv_heads")]  # noqa: E731
        assert kv_keys(new) == kv_keys(old), policy


def _flat_niah(cfg: dict) -> dict:
    """A NIAH config dict as files written before KVConfig stored it (flat fields, no budget)."""
    kv = cfg.pop("kv")
    cfg.update(kv=kv["policy"], kv_sink=kv["sink"], kv_recent=kv["recent"], kv_threshold=kv["threshold"],
               kv_top=kv["top"], kv_seed=kv["seed"], prefill_chunk=kv["prefill_chunk"], kv_prefill=kv["prefill"])
    return cfg


def _flatten(run_dir: Path, flat) -> None:
    meta = json.loads((run_dir / "config.json").read_text())
    meta["config"] = flat(meta["config"])
    (run_dir / "config.json").write_text(json.dumps(meta))


def test_an_old_flat_niah_dir_resumes_as_the_same_run(model, tok, haystack_file, scores_file, tmp_path):
    out = tmp_path / "old"
    cfg = _config(haystack_file, kv=KVConfig(policy="retrieval", sink=2, recent=16, top=2), scores=scores_file)
    first = run_niah(model, tok, cfg, out, progress=False)
    before = _samples(out)
    _flatten(out, _flat_niah)
    assert "kv_sink" in json.loads((out / "config.json").read_text())["config"]
    again = run_niah(model, tok, cfg, out, progress=False)
    assert _samples(out) == before  # every sample resumed, none decoded again
    assert again["mean_score"] == first["mean_score"] and again["kv_bytes"] == first["kv_bytes"]
    assert json.loads((out / "config.json").read_text())["config"] == cfg.to_dict()
    _flatten(out, _flat_niah)
    with pytest.raises(RHeadsError, match="different config"):  # still a check: another window is another run
        run_niah(model, tok, _config(haystack_file, kv=KVConfig(policy="retrieval", sink=2, recent=8, top=2),
                                     scores=scores_file), out, progress=False)


def _flat_sweep(cfg: dict) -> dict:
    kv = cfg.pop("kv")
    cfg.update(sink=kv["sink"], recent=cfg.pop("recent_windows"), kv_threshold=kv["threshold"], kv_top=kv["top"],
               kv_seed=kv["seed"], prefill_chunk=kv["prefill_chunk"], kv_prefill=kv["prefill"])
    return cfg


def test_an_old_flat_sweep_dir_resumes_as_the_same_run(model, tok, haystack_file, scores_file, tmp_path):
    cfg = KVSweepConfig(model=ModelConfig(model="tiny-llama"), probe=_probe(haystack_file, (160,), (0, 100)),
                        scores=scores_file, policies=["full", "retrieval", "streaming"], recent_windows=[8],
                        kv=KVConfig(sink=2, seed=1), max_new_tokens=3)
    out = tmp_path / "sweep"
    first = run_kv_sweep(model, tok, cfg, out, progress=False)
    arms = [a for a in out.rglob("config.json") if a.parent != out]
    before = {a.parent: _samples(a.parent) for a in arms}
    _flatten(out, _flat_sweep)
    for a in arms:
        _flatten(a.parent, _flat_niah)
    again = run_kv_sweep(model, tok, cfg, out, progress=False)
    assert [r["mean_score"] for r in again["arms"]] == [r["mean_score"] for r in first["arms"]]
    assert {d: _samples(d) for d in before} == before  # nothing decoded again
    assert json.loads((out / "config.json").read_text())["config"] == cfg.to_dict()
