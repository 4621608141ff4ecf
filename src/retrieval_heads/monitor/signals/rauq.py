"""`rauq`, an unsupervised baseline: RAUQ (Vazhentsev et al. 2025, "Uncertainty-Aware Attention Heads", arXiv
2505.20045), re-implemented from the paper's Algorithm 1 (higher = more uncertain).

In each layer of the middle third (layers L//3 .. ceil(2L/3), as the authors' code) pick the head with the
highest mean attention from each answer token to its preceding token (a_i, i >= 2); then c_1 = P(y_1),
c_i = alpha P(y_i) + (1 - alpha) a_i c_{i-1}; u_l = -mean_i log c_i; RAUQ = max_l u_l, and per token -log c_i of
the layer that gives the maximum. alpha = 0.2, the paper's value for every task but summarization. a_i is the
attention of the query at token y_i on y_{i-1}: in generation it is recorded at the step after y_i (the row that
emits y_{i+1}); when that row does not exist (a run cut at the token limit) the last a_i is the mean of the
others. It needs every head's previous-token attention: the Monitor computes it with `baselines=True`.

Left out on purpose: lm-polygraph itself, and sampling-based baselines (several generations per answer).
"""

from __future__ import annotations

import math

import numpy as np

from .base import AnswerTrace, Signal, register_signal

RAUQ_ALPHA = 0.2


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


@register_signal
class Rauq(Signal):
    name = "rauq"
    stat = "rauq"
    needs_all_heads = True
    order = 20

    def value(self, a: AnswerTrace, qualifier: str | None = None) -> float | None:
        return a.rauq

    def token_values(self, a: AnswerTrace, qualifier: str | None = None) -> list[float]:
        return list(a.rauq_tokens) or [float("nan")] * len(a.logprobs)
