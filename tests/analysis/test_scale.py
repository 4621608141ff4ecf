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
