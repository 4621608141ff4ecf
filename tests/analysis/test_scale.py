"""The scale table: shares, quantiles, top-head depth and the relative-depth profile of hand-made score maps."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval_heads.analysis.scale import depth_profile, format_scale_table, scale_row, scale_table


def test_a_row_of_a_hand_made_map():
    m = np.zeros((5, 4))
    m[4, 0], m[4, 1], m[0, 2] = 0.5, 0.2, 0.07
    r = scale_row("toy", m, k=2, bins=5)
    assert r["share_above_0.1"] == pytest.approx(2 / 20) and r["share_above_0.05"] == pytest.approx(3 / 20)
    assert r["top"] == [[4, 0, 0.5], [4, 1, 0.2]] and r["top_depth_mean"] == 1.0
    assert r["quantiles"]["1.0"] == 0.5 and r["quantiles"]["0.5"] == 0.0
    assert r["profile"] == pytest.approx([0.07, 0, 0, 0, 0.7])


def test_profiles_of_different_depths_line_up():
    """A 24- and a 28-layer map whose mass rises with relative depth correlate perfectly on the common bins; a
    reversed one anti-correlates."""
    a = np.tile(np.linspace(0, 1, 24)[:, None], (1, 14))
    b = np.tile(np.linspace(0, 1, 28)[:, None], (1, 12))
    rows = scale_table([scale_row("a", a), scale_row("b", b), scale_row("rev", b[::-1])])
    assert rows[0]["profile_spearman"] == pytest.approx(1.0) and rows[1]["profile_spearman"] == pytest.approx(1.0)
    assert rows[2]["profile_spearman"] == pytest.approx(-1.0)
    assert np.isnan(depth_profile(np.ones((3, 2)), bins=10)).any()  # 3 layers cannot fill 10 bins
    assert format_scale_table(rows).count("\n") == 1 + len(rows)


def test_share_intervals_resample_the_counted_samples():
    from retrieval_heads.analysis.scale import share_ci, share_diff_ci
    from retrieval_heads.heads.scores import HeadScores

    def run(rows):
        hs = HeadScores.empty(1, 4)
        for r in rows:
            hs.add_sample(np.array([r], dtype=float))
        return hs

    steady = run([[1.0, 1.0, 0.0, 0.0]] * 6)  # two heads always above 0.1, two never: every resample gives 0.5
    assert share_ci(steady) == [0.5, 0.5]
    mixed = run([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]] * 3)  # head 1 copies in half the samples: mean 0.5
    lo, hi = share_ci(mixed)
    assert lo <= 0.5 <= hi and hi <= 0.5  # head 1's mean is above 0.1 unless no sample of 6 has it (p = 1/64)
    d = share_diff_ci(steady, run([[1.0, 0.0, 0.0, 0.0]] * 6))
    assert d["diff"] == -0.25 and d["ci"] == [-0.25, -0.25]
    with pytest.raises(ValueError):
        share_ci(HeadScores(1, 1, {(0, 0): [0.5]}, counts={(0, 0): 3}))


def test_rheads_scale_writes_the_table_of_two_sizes(tmp_path, capsys):
    import json

    from retrieval_heads.errors import RHeadsError
    from synthetic import cli, make_run

    small = make_run(tmp_path / "small", L=4, H=6, seed=1, retrieval={"2-1": 1.0, "3-4": 0.5})
    big = make_run(tmp_path / "big", L=8, H=6, seed=2, retrieval={"6-1": 1.0, "7-2": 0.9})
    cli(["scale", str(small), str(big), "--out", str(tmp_path / "scale")])
    got = json.loads((tmp_path / "scale" / "scale.json").read_text())
    a, b = got["rows"]
    assert a["model"] == "small" and a["minus_first"] is None and b["layers"] == 8
    assert b["minus_first"]["diff"] == b["share_above_0.1"] - a["share_above_0.1"]
    lo, hi = b["share_above_0.1_ci"]
    assert lo <= b["share_above_0.1"] <= hi
    assert "minus small" in capsys.readouterr().out
    with pytest.raises(RHeadsError, match="two or more runs"):
        cli(["scale", str(small), "--out", str(tmp_path / "one")])
