"""The cluster bootstrap (`analysis.stats.group_weights`, `paired_diff_ci(groups=)`) and its use in the detection
metrics: whole groups are drawn, a sample weighs as often as its group, and copies of one sample do not narrow the
interval as independent samples would."""

from __future__ import annotations

import numpy as np

from retrieval_heads.analysis.stats import bootstrap_ci, group_weights, paired_diff_ci


def test_group_weights_draw_whole_groups():
    w = group_weights(["a", "a", "b", "c", "c", "c"], n_boot=500, seed=1)
    assert w.shape == (500, 6)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 3] == w[:, 4]) and np.all(w[:, 4] == w[:, 5])
    assert np.all(w[:, [0, 2, 3]].sum(axis=1) == 3)  # three groups drawn per resample


def test_copies_of_a_sample_do_not_narrow_the_interval():
    rng = np.random.default_rng(0)
    d = rng.normal(size=10)
    a, b = np.repeat(d, 4), np.zeros(40)  # every sample four times (a needle at four lengths)
    iid = paired_diff_ci(a, b)
    clustered = paired_diff_ci(a, b, groups=np.repeat(np.arange(10), 4))
    alone = bootstrap_ci(d)
    assert iid[1] - iid[0] < 0.7 * (alone[1] - alone[0])  # treated as 40 samples: too narrow
    assert abs((clustered[1] - clustered[0]) - (alone[1] - alone[0])) < 0.25 * (alone[1] - alone[0])
    assert paired_diff_ci([], [], groups=[]) is None


def test_detection_resamples_groups():
    from retrieval_heads.monitor.bench.metrics import detection

    y = [0, 1] * 10
    s = [0.1, 0.9] * 9 + [0.9, 0.1]
    one = detection(y, s)
    grouped = detection(y, s, groups=[i // 2 for i in range(20)])  # each (right, wrong) pair one question
    assert one["auroc"] == grouped["auroc"]
    assert grouped["auroc_ci"] != one["auroc_ci"]
