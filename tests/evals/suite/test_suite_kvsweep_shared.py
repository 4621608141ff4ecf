"""The suite sweep's shared prefill (`studies/kvshared.py`) on a tiny random Llama: the same answers, scores and
bytes in every arm as one prefill per arm (batches of 2), and a masked arm refused in one line."""

from __future__ import annotations

import dataclasses

import pytest

from retrieval_heads.errors import RHeadsError
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.studies.kvsuite import KVSuiteConfig, run_kv_suite
from suite_helpers import scored_suite


def test_the_suite_sweep_answers_alike_with_one_prefill_or_one_per_arm(tmp_path):
    tok, model, suite, scores = scored_suite(tmp_path, ["niah_single_1", "niah_multikey_1"])
    suite = dataclasses.replace(suite, scores=scores)
    cfg = KVSuiteConfig(suite=suite, policies=["full", "snapkv", "hybrid", "streaming"], budgets=[0.3])
    shared = run_kv_suite(model, tok, cfg, tmp_path / "shared", progress=False, batch_size=2)
    alone = run_kv_suite(model, tok, dataclasses.replace(cfg, shared_prefill=False), tmp_path / "alone",
                         progress=False, batch_size=2)
    keep = ("id", "pred", "score", "new_tokens", "ended", "kv_bytes", "kv_bytes_full")
    for arm, _, _ in cfg.arms():
        a = [r for r in read_jsonl(tmp_path / "shared" / arm / "predictions.jsonl") if r.get("type") == "prediction"]
        b = [r for r in read_jsonl(tmp_path / "alone" / arm / "predictions.jsonl") if r.get("type") == "prediction"]
        assert len(a) == 6 and sorted([{k: r[k] for k in keep} for r in a], key=str) == \
            sorted([{k: r[k] for k in keep} for r in b], key=str)
        assert all(r["shared_prefill"] and r["seconds"] >= r["prefill_seconds"] for r in a)
    strip = [{k: v for k, v in r.items() if k != "arm"} for r in shared["rows"]]
    assert strip == [{k: v for k, v in r.items() if k != "arm"} for r in alone["rows"]]


def test_each_batchs_prefill_is_freed_before_the_next(tmp_path, monkeypatch):
    import gc

    from retrieval_heads.kvcache import shared

    tok, model, suite, scores = scored_suite(tmp_path, ["niah_single_1"])
    cfg = KVSuiteConfig(suite=dataclasses.replace(suite, scores=scores), policies=["full", "snapkv"], budgets=[0.3])
    alive = []
    real = shared.derive_cache

    def derive(fresh, capture):  # how many captures exist while a batch's arms decode
        alive.append(sum(type(o) is shared.PrefillCapture for o in gc.get_objects()))
        return real(fresh, capture)

    monkeypatch.setattr(shared, "derive_cache", derive)
    gc.disable()  # the cyclic collector must not be what frees them
    try:
        run_kv_suite(model, tok, cfg, tmp_path / "out", progress=False, batch_size=1)
    finally:
        gc.enable()
    assert len(alive) == 6 and max(alive) == 1  # 3 samples x 2 arms, one capture at a time


def test_a_masked_shared_sweep_is_refused(tmp_path):
    from retrieval_heads.evals.suite.run import open_suite
    from retrieval_heads.studies.kvshared import check_shareable

    tok, model, suite, scores = scored_suite(tmp_path, ["niah_single_1"])
    run = open_suite(model, tok, dataclasses.replace(suite, scores=scores, mask="top:2"), None, progress=False)
    with pytest.raises(RHeadsError, match="unmasked"):
        check_shareable([run])
