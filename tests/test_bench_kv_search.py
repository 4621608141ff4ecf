"""bench/bench_kv.py's search for the largest batch within a memory limit, against a brute-force scan, on peaks
that grow linearly, with noise, and faster than linearly (where the predicted batch misses)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _bench():
    spec = importlib.util.spec_from_file_location("bench_kv", Path(__file__).parents[1] / "bench" / "bench_kv.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _search():
    return _bench().search_max_batch


PEAKS = {
    "linear": lambda b: 120.0 + 290.0 * b,
    "noisy": lambda b: 100.0 + 150.0 * b + (17.0 if b % 3 else -9.0),
    "convex": lambda b: 50.0 + 40.0 * b + 12.0 * b * b,  # the line through b = 1, 2 over-predicts
    "concave": lambda b: 300.0 * b ** 0.5,  # under-predicts: doubling takes over
}


@pytest.mark.parametrize("kind", sorted(PEAKS))
@pytest.mark.parametrize("limit", [100.0, 500.0, 1024.0, 4096.0])
def test_the_search_finds_the_largest_batch_that_fits(kind, limit):
    search = _search()
    peak = PEAKS[kind]
    want = 0
    while peak(want + 1) <= limit:
        want += 1
    b, row, tried = search(lambda b: (peak(b) <= limit, {"peak_mib": peak(b), "batch": b}), limit)
    assert b == want and (row["batch"] == max(b, 1))
    assert want in tried or want == 0 and 1 in tried
    assert want + 1 in tried  # the answer's successor was run and did not fit
    if kind == "linear" and want >= 3:
        assert len(tried) == 4  # 1, 2, the prediction, the next


def test_a_flat_line_through_the_first_two_peaks_does_not_launch_a_huge_batch():
    search = _search()
    peak = lambda b: 1000.0 + 0.1 * b if b <= 2 else 1000.0 + 300.0 * b  # noqa: E731
    b, _, tried = search(lambda b: (peak(b) <= 4096.0, {"peak_mib": peak(b)}), 4096.0)
    assert b == 10 and max(tried) <= 32


@pytest.mark.parametrize("limit", [100.0, 410.0, 1024.0, 4096.0])
def test_the_prediction_is_the_largest_batch_on_a_linear_peak(limit):
    predict = _bench().predict_max_batch
    peak = PEAKS["linear"]
    want = 0
    while peak(want + 1) <= limit:
        want += 1
    assert predict(peak(1), peak(2), limit) == want


def test_the_prediction_refuses_a_flat_line_and_a_first_batch_over_the_limit():
    predict = _bench().predict_max_batch
    assert predict(500.0, 500.0, 1024.0) is None and predict(500.0, 450.0, 1024.0) is None
    assert predict(2000.0, 2500.0, 1024.0) == 0
