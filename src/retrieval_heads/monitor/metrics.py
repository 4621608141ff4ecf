"""Detection metrics with bootstrap 95% intervals: AUROC, the paired AUROC difference of two detectors on the same
answers, precision at 80% recall, and token-level AUROC resampled by answer.

Intervals follow `analysis.stats` (2000 resamples, fixed seed 0, percentile interval), resampling answers with
replacement; AUROC is not a mean, so the statistic is recomputed on each resample here rather than averaged.
A resample with only one class is drawn again. Scores are oriented so that higher = more likely hallucinated;
AUROC uses scikit-learn.

Left out on purpose: thresholds for deployment (those would be fitted to labels) and significance tests.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import precision_recall_curve, roc_auc_score

from ..analysis.stats import N_BOOT


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC by ranks (ties averaged): equal to roc_auc_score, and fast enough for thousands of resamples."""
    r = rankdata(s)
    n1 = y.sum()
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))


def _r(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def _valid(y: Sequence[int], *scores: Sequence[float]) -> np.ndarray:
    keep = np.ones(len(y), dtype=bool)
    for s in scores:
        keep &= np.isfinite(np.asarray(s, dtype=float))
    return keep


def _boot_index(y: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n_boot:
        idx = rng.integers(0, len(y), size=len(y))
        if 0 < y[idx].sum() < len(idx):
            out.append(idx)
    return out


def auroc(y: Sequence[int], s: Sequence[float]) -> float | None:
    y, s = np.asarray(y, dtype=int), np.asarray(s, dtype=float)
    keep = _valid(y, s)
    y, s = y[keep], s[keep]
    if len(y) == 0 or y.min() == y.max():
        return None
    return float(roc_auc_score(y, s))


def precision_at_recall(y: Sequence[int], s: Sequence[float], recall: float = 0.8) -> float | None:
    """The best precision among thresholds whose recall is at least `recall`."""
    y, s = np.asarray(y, dtype=int), np.asarray(s, dtype=float)
    keep = _valid(y, s)
    y, s = y[keep], s[keep]
    if y.sum() == 0:
        return None
    p, r, _ = precision_recall_curve(y, s)
    return float(p[r >= recall].max())


def detection(y: Sequence[int], s: Sequence[float], *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """{"n", "positives", "auroc", "auroc_ci", "p_at_r80"} of one detector."""
    y, s = np.asarray(y, dtype=int), np.asarray(s, dtype=float)
    keep = _valid(y, s)
    y, s = y[keep], s[keep]
    out = {"n": int(len(y)), "positives": int(y.sum()), "auroc": None, "auroc_ci": None, "p_at_r80": None}
    if len(y) < 2 or y.min() == y.max():
        return out
    boots = [_auc(y[i], s[i]) for i in _boot_index(y, n_boot, seed)]
    out.update(auroc=_r(roc_auc_score(y, s)), auroc_ci=[_r(v) for v in np.percentile(boots, [2.5, 97.5])],
               p_at_r80=_r(precision_at_recall(y, s)))
    return out


def paired_auroc_diff(y: Sequence[int], a: Sequence[float], b: Sequence[float], *, n_boot: int = N_BOOT,
                      seed: int = 0) -> dict:
    """AUROC(a) - AUROC(b) on the same answers, with the interval from shared resamples."""
    y, a, b = np.asarray(y, dtype=int), np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = _valid(y, a, b)
    y, a, b = y[keep], a[keep], b[keep]
    if len(y) < 2 or y.min() == y.max():
        return {"n": int(len(y)), "diff": None, "ci": None}
    diffs = [_auc(y[i], a[i]) - _auc(y[i], b[i]) for i in _boot_index(y, n_boot, seed)]
    return {"n": int(len(y)), "diff": _r(roc_auc_score(y, a) - roc_auc_score(y, b)),
            "ci": [_r(v) for v in np.percentile(diffs, [2.5, 97.5])]}


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
    if keep.sum() < 2 or y[keep].min() == y[keep].max():
        return out
    rng = np.random.default_rng(seed)
    boots = []
    while len(boots) < n_boot:
        idx = rng.integers(0, len(groups), size=len(groups))
        yb, sb = np.concatenate([ys[i] for i in idx]), np.concatenate([ss[i] for i in idx])
        kb = _valid(yb, sb)
        if 0 < yb[kb].sum() < kb.sum():
            boots.append(_auc(yb[kb], sb[kb]))
    out.update(auroc=_r(roc_auc_score(y[keep], s[keep])), auroc_ci=[_r(v) for v in np.percentile(boots, [2.5, 97.5])],
               p_at_r80=_r(precision_at_recall(y[keep], s[keep])))
    return out
