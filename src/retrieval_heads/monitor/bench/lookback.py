"""Lookback Lens (Chuang et al. 2024), the SUPERVISED comparator: a logistic regression over every head's lookback
ratio, trained on labelled answers.

A head's lookback ratio at answer token t is its mean attention per prompt token over (that + its mean attention
per generated token), recorded during generation (`recording.Recording`); an answer's features are each head's
ratio averaged over the answer's tokens (the paper's span features), L x H numbers. The classifier is the
paper's: scikit-learn's LogisticRegression on standardized features.
- in-domain (`out_of_fold`): two folds split by source (needle or fact, so no source is in both), each fold
  scored by the model fitted on the other;
- other task (`transfer`): fitted on every labelled answer of one task, scored on the other task's.
Token level (`window_features`): the same classifier applied to each token's ratios averaged over the last 8
tokens (the paper's 8-token chunks). The settings and their columns are the registry's `lookback` signal
(`signals/lookback.py`); this module is the classifier it fits.

Left out on purpose: the paper's classifier-guided decoding, and any tuning of the regression (defaults only).
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .metrics import enough

WINDOW = 8


def fit(X: np.ndarray, y: Sequence[int]):
    """A fitted pipeline (standardize + logistic regression), or None with under MIN_PER_CLASS of a class."""
    y = np.asarray(y, dtype=int)
    if not enough(y):
        return None
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X, y)


def predict(model, X: np.ndarray) -> np.ndarray:
    if model is None or len(X) == 0:
        return np.full(len(X), np.nan)
    return model.predict_proba(X)[:, 1]


def folds(groups: Sequence[str], k: int = 2, seed: int = 0) -> np.ndarray:
    """Fold number per item; all items of a group share a fold (groups shuffled by `seed`, dealt in turn)."""
    uniq = sorted(set(groups))
    random.Random(seed).shuffle(uniq)
    where = {g: i % k for i, g in enumerate(uniq)}
    return np.array([where[g] for g in groups])


def out_of_fold(X: np.ndarray, y: Sequence[int], groups: Sequence[str], k: int = 2,
                seed: int = 0) -> tuple[np.ndarray, list]:
    """In-domain predictions: each item scored by the model fitted on the other folds; and those models."""
    y = np.asarray(y, dtype=int)
    f = folds(groups, k, seed)
    pred = np.full(len(y), np.nan)
    models = []
    for i in range(k):
        m = fit(X[f != i], y[f != i])
        pred[f == i] = predict(m, X[f == i])
        models.append(m)
    return pred, [models[i] for i in f]  # the model that scored each item


def window_features(lr: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """[T, n_heads] per-token ratios -> [T, n_heads] means over the last `window` tokens up to each token."""
    c = np.cumsum(np.vstack([np.zeros((1, lr.shape[1])), lr.astype(np.float64)]), axis=0)  # [T+1, n]
    t = np.arange(1, len(lr) + 1)
    lo = np.maximum(t - window, 0)
    return (c[t] - c[lo]) / (t - lo)[:, None]
