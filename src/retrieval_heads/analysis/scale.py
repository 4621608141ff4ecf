"""Two sizes of one model family side by side: how the retrieval score distribution moves with scale.

`scale_row(scores)` describes one model's head scores: the share of heads above 0.1 and above 0.05, quantiles of
the per-head mean score, the relative depth (layer / (layers - 1)) of its top-20 heads, and its per-layer score
mass on a common grid of relative depth (`profile`). `scale_table(rows)` adds the Spearman correlation of each
model's profile with the first one's; `format_scale_table` prints it as Markdown. Models of different depths are
compared on `bins` equal bins of relative depth (each layer's score mass goes to the bin of its relative depth,
and each bin is the mean over the layers in it), so a 24-layer and a 28-layer model line up.

`share_ci(scores)` and `share_diff_ci(a, b)` give bootstrap 95% intervals of the share of heads above the
threshold, resampling each run's counted samples (the head scores are recomputed as means over the drawn samples);
the difference resamples the two runs independently (their counted samples need not be the same probes).

Left out on purpose: significance tests, and per-head matching across sizes (heads of different models are not
the same heads).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..heads.scores import HeadScores
from .compare import spearman

QUANTILES = (0.5, 0.9, 0.95, 0.99, 1.0)


def depth_profile(m: np.ndarray, bins: int = 10) -> np.ndarray:
    """[bins] mean per-layer score mass (sum over the layer's heads) of the layers in each relative-depth bin."""
    L = m.shape[0]
    mass = m.sum(axis=1)  # [L]
    depth = np.arange(L) / max(L - 1, 1)  # [L] in [0, 1]
    which = np.minimum((depth * bins).astype(int), bins - 1)  # [L] bin of each layer
    return np.array([mass[which == b].mean() if (which == b).any() else np.nan for b in range(bins)])


def scale_row(name: str, scores: HeadScores | np.ndarray, k: int = 20, bins: int = 10) -> dict[str, Any]:
    m = scores.mean() if isinstance(scores, HeadScores) else np.asarray(scores, dtype=float)  # [L, H]
    L, H = m.shape
    flat = m.ravel()
    order = sorted(np.ndindex(L, H), key=lambda lh: (-m[lh], lh))[:k]  # ties by (layer, head)
    depths = np.array([l / max(L - 1, 1) for l, _ in order])
    return {"model": name, "layers": L, "heads": H, "n_heads": L * H,
            "n_samples": getattr(scores, "n_samples", None),
            "share_above_0.1": float((flat > 0.1).mean()), "share_above_0.05": float((flat > 0.05).mean()),
            "quantiles": {str(q): float(np.quantile(flat, q)) for q in QUANTILES},
            "top_depth_mean": float(depths.mean()), "top_depth_median": float(np.median(depths)),
            "top": [[int(l), int(h), round(float(m[l, h]), 4)] for l, h in order],
            "profile": [None if np.isnan(x) else float(x) for x in depth_profile(m, bins)]}


def scale_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows, each with `profile_spearman`: the Spearman correlation of its depth profile with the first row's."""
    ref = np.array([np.nan if x is None else x for x in rows[0]["profile"]])
    out = []
    for r in rows:
        p = np.array([np.nan if x is None else x for x in r["profile"]])
        ok = ~np.isnan(ref) & ~np.isnan(p)
        out.append({**r, "profile_spearman": spearman(ref[ok], p[ok]) if ok.sum() >= 3 else None})
    return out


def format_scale_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ("| model | layers x heads | samples | > 0.1 | > 0.05 | median | q90 | q99 | max | top-20 depth (mean, median)"
            " | profile Spearman vs first |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    lines = [head]
    for r in rows:
        q = r["quantiles"]
        rho = r.get("profile_spearman")
        lines.append(f"| {r['model']} | {r['layers']} x {r['heads']} | {r['n_samples']} | "
                     f"{100 * r['share_above_0.1']:.1f}% | {100 * r['share_above_0.05']:.1f}% | {q['0.5']:.3f} | "
                     f"{q['0.9']:.3f} | {q['0.99']:.3f} | {q['1.0']:.3f} | {r['top_depth_mean']:.2f}, "
                     f"{r['top_depth_median']:.2f} | {'-' if rho is None else f'{rho:.2f}'} |")
    return "\n".join(lines)


def _samples(scores: HeadScores) -> np.ndarray:
    """[S, L, H] per-sample scores (heads of a run hold one score per counted sample)."""
    if scores.counts is not None:
        raise ValueError("per-head means only (an atlas entry): no samples to resample")
    L, H = scores.num_layers, scores.num_heads
    x = np.array([[scores.per_sample[(l, h)] for h in range(H)] for l in range(L)], dtype=float)  # [L, H, S]
    return x.transpose(2, 0, 1)  # [S, L, H]


def _boot_shares(x: np.ndarray, threshold: float, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot] share of heads whose mean over a resample of the S samples of x [S, L, H] is above threshold."""
    S = x.shape[0]
    out = np.empty(n_boot)
    for b in range(n_boot):
        m = x[rng.integers(0, S, size=S)].mean(axis=0)  # [L, H]
        out[b] = (m > threshold).mean()
    return out


def share_ci(scores: HeadScores, threshold: float = 0.1, n_boot: int = 2000, seed: int = 0) -> list[float]:
    """[low, high] of the share of heads above `threshold`, resampling the run's counted samples."""
    b = _boot_shares(_samples(scores), threshold, n_boot, np.random.default_rng(seed))
    return [float(x) for x in np.percentile(b, [2.5, 97.5])]


def share_diff_ci(a: HeadScores, b: HeadScores, threshold: float = 0.1, n_boot: int = 2000,
                  seed: int = 0) -> dict[str, Any]:
    """{"diff": share(b) - share(a), "ci": [low, high]}: the two runs resampled independently."""
    rng = np.random.default_rng(seed)
    xa, xb = _samples(a), _samples(b)
    d = _boot_shares(xb, threshold, n_boot, rng) - _boot_shares(xa, threshold, n_boot, rng)
    diff = float((xb.mean(axis=0) > threshold).mean() - (xa.mean(axis=0) > threshold).mean())
    return {"diff": diff, "ci": [float(x) for x in np.percentile(d, [2.5, 97.5])]}
