"""`ablate --suite` (studies/suiteablate.py) on a tiny random Llama: the sweep's masks each a suite folder on the
same samples, per-family rows whose means and paired top-minus-control differences come from the predictions,
resume, and refusals before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval_heads.errors import ParamError, RHeadsError
from retrieval_heads.evals.suite.registry import get_task
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.studies.suiteablate import SuiteAblateConfig, format_table, run_suite_ablate
from suite_helpers import scored_suite


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return scored_suite(tmp_path_factory.mktemp("suite-ablate"), ["niah_single_1", "fwe"], seed=1)


def test_masks_per_family(setup, tmp_path):
    tok, model, suite, scores = setup
    cfg = SuiteAblateConfig(suite=suite, scores=scores, ks=[0, 2], random_seeds=2, controls=["random"],
                            threshold=0.5)
    out = tmp_path / "abl"
    summary = run_suite_ablate(model, tok, cfg, out, progress=False)
    assert summary["missing"] == [] and set(summary["results"]) == {"retrieval", "aggregation", "all"}
    preds = {name: sorted((r for r in read_jsonl(out / name / "predictions.jsonl") if r.get("type") == "prediction"),
                          key=lambda r: r["id"]) for name in ("k0-baseline", "top-k2", "random-k2-seed0",
                                                              "random-k2-seed1")}
    assert len({tuple(r["id"] for r in v) for v in preds.values()}) == 1  # the same samples under every mask
    for fam, rows in summary["results"].items():
        def scores_of(name):
            return [r["score"] for r in preds[name] if fam == "all" or get_task(r["task"]).family == fam]

        top = next(r for r in rows if r["kind"] == "top")
        rnd = next(r for r in rows if r["kind"] == "random")
        assert top["mean"] == pytest.approx(np.mean(scores_of("top-k2")), abs=1e-3)
        assert rnd["values"] == pytest.approx([np.mean(scores_of(f"random-k2-seed{s}")) for s in (0, 1)], abs=1e-3)
        assert rnd["top_minus"]["diff"] == pytest.approx(top["mean"] - np.mean(rnd["values"]), abs=1e-3)
    assert (out / "families.png").stat().st_size > 1000 and "K=2" in format_table(summary)
    again = run_suite_ablate(model, tok, cfg, out, progress=False)
    assert again["results"] == summary["results"]


def test_bad_sweeps_write_nothing(setup, tmp_path):
    tok, model, suite, scores = setup
    with pytest.raises(RHeadsError, match="needs scores"):
        run_suite_ablate(model, tok, SuiteAblateConfig(suite=suite), tmp_path / "a", progress=False)
    with pytest.raises(ParamError):
        run_suite_ablate(model, tok, SuiteAblateConfig(suite=suite, scores=scores, ks=[-1]), tmp_path / "b",
                         progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
