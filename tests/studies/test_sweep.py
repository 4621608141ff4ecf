"""Sweep rows on hand-made run summaries: means over seeds, intervals, and the top-K minus each control paired
over samples (none until the top-K run is done, none for samples that do not line up)."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval_heads.analysis.stats import bootstrap_ci, format_diff, paired_diff_ci
from retrieval_heads.studies.sweep import SweepConfig, aggregate, plan, row

TOP = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0] * 5  # 30 items
SEEDS = ([1.0, 1.0, 1.0, 0.0, 1.0, 1.0] * 5, [1.0, 1.0, 0.0, 1.0, 1.0, 1.0] * 5)


def _runs():
    return plan(SweepConfig(scores="s.json", ks=[0, 2], random_seeds=2, controls=["random"]))


def _done(top=TOP, seeds=SEEDS):
    done = {"k0-baseline": {"accuracy": 1.0, "item": [1.0] * 30}}
    if top is not None:
        done["top-k2"] = {"accuracy": float(np.mean(top)) if top else 0.0, "item": list(top)}
    for s, v in enumerate(seeds):
        done[f"random-k2-seed{s}"] = {"accuracy": float(np.mean(v)) if v else 0.0, "item": list(v)}
    return done


def test_plan_names_the_runs():
    assert [r.name for r in _runs()] == ["k0-baseline", "top-k2", "random-k2-seed0", "random-k2-seed1"]


def test_control_rows_carry_the_paired_difference_to_the_top_k():
    rows = aggregate(_runs(), _done(), "accuracy", "item")
    ctl, top = row(rows, 2, "random"), row(rows, 2, "top")
    assert ctl["mean"] == pytest.approx(5 / 6, abs=1e-4) and ctl["n_seeds"] == 2
    assert ctl["values"] == pytest.approx([5 / 6, 5 / 6], abs=1e-4)
    assert top["top_minus"] is None and row(rows, 0, "none")["top_minus"] is None
    per_item = np.mean(SEEDS, axis=0)  # each item's control value: its mean over the seeds
    assert ctl["top_minus"]["diff"] == pytest.approx(np.mean(TOP) - per_item.mean(), abs=1e-4)
    assert ctl["top_minus"]["ci95"] == paired_diff_ci(TOP, per_item)
    lo, hi = ctl["top_minus"]["ci95"]
    assert lo <= ctl["top_minus"]["diff"] <= hi < 0  # the top-K loses items the control keeps
    assert "per_sample" not in ctl


def test_no_difference_without_the_top_k_or_with_unpaired_samples():
    assert row(aggregate(_runs(), _done(top=None), "accuracy", "item"), 2, "random")["top_minus"] is None
    short = aggregate(_runs(), _done(top=TOP[:4]), "accuracy", "item")
    assert row(short, 2, "random")["top_minus"] is None
    old = aggregate(_runs(), _done(top=[], seeds=([], [])), "accuracy", "item")  # no per-sample values kept
    assert row(old, 2, "random")["top_minus"] is None


def test_format_diff_and_a_constant_interval():
    assert format_diff({"diff": -0.25, "ci95": [-0.5, -0.0833]}, "{:+.3f}") == "-0.250 [-0.500, -0.083]"
    assert format_diff({"diff": 12.0, "ci95": None}) == "+12.0" and format_diff(None) == "-"
    assert bootstrap_ci([0.3] * 5) == [0.3, 0.3] and bootstrap_ci([]) is None
    with pytest.raises(ValueError, match="differ in length"):
        paired_diff_ci([1.0], [1.0, 2.0])
