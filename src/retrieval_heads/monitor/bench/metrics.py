"""Detection metrics with bootstrap 95% intervals: AUROC, the paired AUROC difference of two detectors on the same
answers, precision at 80% recall, and token-level AUROC resampled by answer.

Intervals follow `analysis.stats` (2000 resamples, fixed seed 0, percentile interval), resampling answers with
replacement; AUROC is not a mean, so the statistic is recomputed on each resample (all resamples at once, from
each answer's draw count) rather than averaged. Resamples lacking a class are left out. Two detectors compared
on the same answers share their resamples. Token-level intervals resample answers, each with all its tokens.
Scores are oriented so that higher = more likely hallucinated; point AUROCs come from scikit-learn.
An AUROC needs at least MIN_PER_CLASS answers of each class (at token level: answers holding a token of each
class); with fewer, one answer decides it (Qwen has 1 wrong NIAH answer in 125), so it is left out (None).

Left out on purpose: thresholds for deployment (those would be fitted to labels) and significance tests.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score

from ...analysis.stats import N_BOOT, draw_counts, group_weights

MIN_PER_CLASS = 5


def enough(y: np.ndarray) -> bool:
    """At least MIN_PER_CLASS of each class (0 and 1) in `y`."""
    n1 = int(np.sum(y == 1))
    return n1 >= MIN_PER_CLASS and len(y) - n1 >= MIN_PER_CLASS


def _r(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def _valid(y: Sequence[int], *scores: Sequence[float]) -> np.ndarray:
    keep = np.ones(len(y), dtype=bool)
    for s in scores:
        keep &= np.isfinite(np.asarray(s, dtype=float))
    return keep


def _counts(n: int, n_boot: int, seed: int, groups: Sequence | None = None) -> np.ndarray:
    """[n_boot, n] how often each item is drawn in each resample (with replacement); with `groups` (one label per
    item), whole groups are drawn (`analysis.stats.group_weights`)."""
    return draw_counts(n, n_boot, seed) if groups is None else group_weights(groups, n_boot, seed)


def _boot_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC of every resample at once: resample b weighs item i by w[b, i] (its draw count). This Mann-Whitney
    form, ties counted one half, equals roc_auc_score on the expanded resample. NaN for a resample lacking a class."""
    pos, neg = y == 1, y == 0
    k = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])  # [n1, n0]
    wp, wn = w[:, pos], w[:, neg]  # [B, n1], [B, n0]
    num = ((wp @ k) * wn).sum(axis=1)  # [B]
    den = wp.sum(axis=1) * wn.sum(axis=1)  # [B]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _ci(vals: np.ndarray) -> list[float | None]:
    v = vals[np.isfinite(vals)]
    return [_r(x) for x in np.percentile(v, [2.5, 97.5])]


def precision_at_recall(y: Sequence[int], s: Sequence[float], recall: float = 0.8) -> float | None:
    """The best precision among thresholds whose recall is at least `recall`."""
    y, s = np.asarray(y, dtype=int), np.asarray(s, dtype=float)
    keep = _valid(y, s)
    y, s = y[keep], s[keep]
    if y.sum() == 0:
        return None
    p, r, _ = precision_recall_curve(y, s)
    return float(p[r >= recall].max())


def detection(y: Sequence[int], s: Sequence[float], *, n_boot: int = N_BOOT, seed: int = 0,
              groups: Sequence | None = None) -> dict:
    """{"n", "positives", "auroc", "auroc_ci", "p_at_r80"} of one detector (`groups`: a cluster bootstrap)."""
    y, s = np.asarray(y, dtype=int), np.asarray(s, dtype=float)
    keep = _valid(y, s)
    y, s = y[keep], s[keep]
    g = None if groups is None else [x for x, k in zip(groups, keep) if k]
    out = {"n": int(len(y)), "positives": int(y.sum()), "auroc": None, "auroc_ci": None, "p_at_r80": None}
    if not enough(y):
        return out
    boots = _boot_auc(y, s, _counts(len(y), n_boot, seed, g))
    out.update(auroc=_r(roc_auc_score(y, s)), auroc_ci=_ci(boots), p_at_r80=_r(precision_at_recall(y, s)))
    return out


def paired_auroc_diff(y: Sequence[int], a: Sequence[float], b: Sequence[float], *, n_boot: int = N_BOOT,
                      seed: int = 0, groups: Sequence | None = None) -> dict:
    """AUROC(a) - AUROC(b) on the same answers, with the interval from shared resamples (`groups`: clustered)."""
    y, a, b = np.asarray(y, dtype=int), np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = _valid(y, a, b)
    y, a, b = y[keep], a[keep], b[keep]
    g = None if groups is None else [x for x, k in zip(groups, keep) if k]
    if not enough(y):
        return {"n": int(len(y)), "diff": None, "ci": None}
    w = _counts(len(y), n_boot, seed, g)
    diffs = _boot_auc(y, a, w) - _boot_auc(y, b, w)
    return {"n": int(len(y)), "diff": _r(roc_auc_score(y, a) - roc_auc_score(y, b)), "ci": _ci(diffs)}


def token_detection(groups: list[tuple[Sequence[int], Sequence[float]]], *, n_boot: int = 1000,
                    seed: int = 0) -> dict:
    """Token-level AUROC over the tokens of many answers ((labels, scores) per answer), the interval from
    resampling answers (tokens of one answer are not independent)."""
    ys = [np.asarray(g[0], dtype=int) for g in groups]
    ss = [np.asarray(g[1], dtype=float) for g in groups]
    y, s = (np.concatenate(ys), np.concatenate(ss)) if ys else (np.zeros(0, int), np.zeros(0))
    keep = _valid(y, s)
    out = {"n_tokens": int(keep.sum()), "n_answers": len(groups), "positives": int(y[keep].sum()), "auroc": None,
           "auroc_ci": None, "p_at_r80": None}
    owner = np.concatenate([np.full(len(g), i) for i, g in enumerate(ys)])[keep]  # answer of each token
    with_pos, with_neg = len(set(owner[y[keep] == 1])), len(set(owner[y[keep] == 0]))
    if min(with_pos, with_neg) < MIN_PER_CLASS:
        return out
    w = _counts(len(groups), n_boot, seed)[:, owner]  # [B, tokens]: a token is drawn with its answer
    boots = _boot_auc(y[keep], s[keep], w)
    out.update(auroc=_r(roc_auc_score(y[keep], s[keep])), auroc_ci=_ci(boots),
               p_at_r80=_r(precision_at_recall(y[keep], s[keep])))
    return out
