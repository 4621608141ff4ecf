"""Unsupervised baselines on the same answer tokens as the monitor: logit statistics and RAUQ.

- logit baselines: mean and minimum log-probability of the emitted tokens, maximum and mean entropy of the
  next-token distributions, and the answer length in tokens (`logit_baselines`);
- RAUQ (Vazhentsev et al. 2025, "Uncertainty-Aware Attention Heads", arXiv 2505.20045), re-implemented from the
  paper's Algorithm 1: in each layer of the middle third (layers L//3 .. ceil(2L/3), as the authors' code) pick
  the head with the highest mean attention from each answer token to its preceding token (a_i, i >= 2); then
  c_1 = P(y_1), c_i = alpha P(y_i) + (1 - alpha) a_i c_{i-1}; u_l = -mean_i log c_i; RAUQ = max_l u_l.
  alpha = 0.2, the paper's value for every task but summarization (`rauq`). a_i is the attention of the query at
  token y_i on y_{i-1}: in generation it is recorded at the step after y_i (the row that emits y_{i+1}); when
  that row does not exist (a run cut at the token limit) the last a_i is the mean of the others.
`BASELINES` orients each as a hallucination score (higher = less trustworthy) for the benchmark.

Left out on purpose: sampling-based baselines (semantic entropy and the like: several generations per answer)
and lm-polygraph itself.
"""

from __future__ import annotations

import math

import numpy as np

RAUQ_ALPHA = 0.2

# name -> (key in AnswerReport.baselines, sign): hallucination score = sign * value
BASELINES = {
    "mean_logprob": ("mean_logprob", -1.0),
    "min_logprob": ("min_logprob", -1.0),
    "max_entropy": ("max_entropy", 1.0),
    "mean_entropy": ("mean_entropy", 1.0),
    "length": ("n_tokens", 1.0),
    "rauq": ("rauq", 1.0),
}


def logit_baselines(logprobs: list[float], entropies: list[float]) -> dict[str, float | None]:
    if not logprobs:
        return {"mean_logprob": None, "min_logprob": None, "max_entropy": None, "mean_entropy": None, "n_tokens": 0}
    return {"mean_logprob": float(np.mean(logprobs)), "min_logprob": float(np.min(logprobs)),
            "max_entropy": float(np.max(entropies)), "mean_entropy": float(np.mean(entropies)),
            "n_tokens": len(logprobs)}


def rauq_layers(num_layers: int) -> list[int]:
    return [l for l in range(num_layers // 3, math.ceil(num_layers * 2 / 3) + 1) if l < num_layers]


def prev_attention(prev_rows: np.ndarray, n_tokens: int) -> np.ndarray:
    """[T, n_heads] a_i per answer token from recorded rows [R, n_heads] (row r's query is answer token r - 1);
    row 0 of the result (token 1, which has no predecessor in the answer) is zeros and unused."""
    out = np.zeros((n_tokens, prev_rows.shape[1]), dtype=np.float64)
    have = min(n_tokens, prev_rows.shape[0] - 1)  # tokens i whose row i + 1 was recorded
    if have > 1:
        out[1:have] = prev_rows[2:have + 1]
    if have < n_tokens and n_tokens > 1:
        fill = out[1:have].mean(axis=0) if have > 1 else np.zeros(prev_rows.shape[1])
        out[max(have, 1):] = fill
    return out


def rauq(logprobs: list[float], prev_rows: np.ndarray, num_layers: int, num_heads: int,
         alpha: float = RAUQ_ALPHA) -> tuple[float | None, list[float]]:
    """(RAUQ uncertainty, per-token -log c_i of the layer that gives the maximum). `prev_rows` [R, L*H]: recorded
    previous-position attention of every head, heads in (layer, head) order."""
    T = len(logprobs)
    if T == 0:
        return None, []
    p = np.exp(np.asarray(logprobs, dtype=np.float64))  # [T]
    a = prev_attention(prev_rows, T).reshape(T, num_layers, num_heads)  # [T, L*H] -> [T, L, H]
    best, best_tok = -math.inf, []
    for l in rauq_layers(num_layers):
        h = int(a[1:, l].mean(axis=0).argmax()) if T > 1 else 0
        c = np.empty(T)
        c[0] = p[0]
        for i in range(1, T):
            c[i] = alpha * p[i] + (1 - alpha) * a[i, l, h] * c[i - 1]
        neg = -np.log(np.maximum(c, 1e-300))
        if neg.mean() > best:
            best, best_tok = float(neg.mean()), neg.tolist()
    return best, best_tok
