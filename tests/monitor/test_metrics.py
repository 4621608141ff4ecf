"""Detection metrics and the supervised comparator: AUROC by ranks equals scikit-learn's (ties included), the
intervals hold the point and shrink with more answers, precision at 80% recall on a hand-made ranking, the paired
difference, token-level AUROC resampled by answer; Lookback Lens folds keep a source together, and its classifier
separates separable features in and out of fold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from retrieval_heads.monitor.bench import lookback as lb
from retrieval_heads.monitor.bench.metrics import (MIN_PER_CLASS, _boot_auc, _counts, detection, paired_auroc_diff,
                                             precision_at_recall, token_detection)


def test_resampled_auroc_equals_sklearn_on_the_expanded_resample_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    y[:2] = [0, 1]
    s = rng.integers(0, 5, 50).astype(float)  # many ties
    w = _counts(50, 20, seed=3)
    assert (w.sum(axis=1) == 50).all()
    got = _boot_auc(y, s, w)
    for b in range(20):
        idx = np.repeat(np.arange(50), w[b].astype(int))
        assert got[b] == pytest.approx(roc_auc_score(y[idx], s[idx]))
    assert _boot_auc(y, s, np.ones((1, 50)))[0] == pytest.approx(roc_auc_score(y, s))


def test_detection_interval_and_precision_at_recall():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(150, int), np.ones(50, int)]
    s = y * 1.0 + rng.normal(0, 1, 200)
    d = detection(y, s)
    assert d["n"] == 200 and d["positives"] == 50
    assert d["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-4)
    lo, hi = d["auroc_ci"]
    assert lo < d["auroc"] < hi and hi - lo < 0.2
    small = detection(y[::4], s[::4])
    assert small["auroc_ci"][1] - small["auroc_ci"][0] > hi - lo
    # ranking: 1 1 0 1 0 1 0 0 (best first): recall >= 0.8 needs the top 6 -> precision 4/6
    yy = np.array([1, 1, 0, 1, 0, 1, 0, 0])
    ss = np.arange(8, 0, -1).astype(float)
    assert precision_at_recall(yy, ss) == pytest.approx(4 / 6)
    assert detection([0, 0, 0], [1, 2, 3])["auroc"] is None
    assert detection([0, 1, 1], [1.0, np.nan, 2.0])["n"] == 2  # NaN scores are dropped


def test_paired_difference_and_token_level():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    good, bad = y + rng.normal(0, 0.5, 300), rng.normal(0, 1, 300)
    d = paired_auroc_diff(y, good, bad)
    assert d["diff"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, bad), abs=1e-4)
    assert 0 < d["ci"][0] < d["diff"] < d["ci"][1]
    groups = [([0, 0, 1], [0.1, 0.2, 0.9]), ([0, 0], [0.3, 0.1]), ([1, 0, 1], [0.8, 0.2, 0.4])] * 2
    groups += [([1, 0], [0.7, 0.5])] * 3
    t = token_detection(groups, n_boot=200)
    flat_y = [l for g in groups for l in g[0]]
    flat_s = [v for g in groups for v in g[1]]
    assert t["auroc"] == pytest.approx(roc_auc_score(flat_y, flat_s), abs=1e-4)
    assert t["n_tokens"] == 22 and t["n_answers"] == 9 and t["positives"] == 9
    # fewer than MIN_PER_CLASS answers hold a wrong token (or one class has too few answers): no AUROC
    assert token_detection(groups[:6], n_boot=50)["auroc"] is None  # 4 answers hold a wrong token


def test_an_auroc_needs_enough_answers_of_each_class():
    s = np.arange(20, dtype=float)
    y = (np.arange(20) >= 20 - MIN_PER_CLASS).astype(int)
    assert detection(y, s)["auroc"] == 1.0 and paired_auroc_diff(y, s, -s)["diff"] == 1.0
    y[20 - MIN_PER_CLASS] = 0  # one wrong answer fewer: one answer would decide the AUROC
    assert detection(y, s)["auroc"] is None and paired_auroc_diff(y, s, -s)["diff"] is None
    X = np.c_[s, s]
    assert lb.fit(X, y) is None and lb.fit(X, (np.arange(20) >= 10).astype(int)) is not None


def test_lookback_folds_fit_and_windows():
    groups = [f"g{i % 7}" for i in range(70)]
    f = lb.folds(groups, k=2, seed=0)
    for g in set(groups):
        assert len({f[i] for i in range(70) if groups[i] == g}) == 1
    assert set(f) == {0, 1}
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 70)
    X = rng.normal(0, 1, (70, 12))
    X[:, 3] += 4 * y  # one informative head
    pred, models = lb.out_of_fold(X, y, groups)
    assert np.isfinite(pred).all() and roc_auc_score(y, pred) > 0.9
    assert lb.fit(X, np.zeros(70)) is None and np.isnan(lb.predict(None, X[:2])).all()
    lr = np.arange(20, dtype=float).reshape(10, 2)
    w = lb.window_features(lr, window=3)
    assert w[0] == pytest.approx(lr[0]) and w[1] == pytest.approx(lr[:2].mean(0)) and w[9] == pytest.approx(lr[7:].mean(0))
