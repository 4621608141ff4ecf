"""KV budgets: how many of a prompt's positions each KV head keeps, so that a policy holds at most a given share of
the full cache's bytes.

A **budget** b in (0, 1] is the share of the full cache's keys and values that the compressed prompt may hold,
summed over every KV head of every full-attention layer (sliding-window layers keep their window and do not
count). For an n-token prompt and N such KV heads the policy may keep `total = floor(b * n) * N` head-positions.
An `Allotment` says, per [layer, KV head], what the head keeps of the prompt:
- `FULL`: every position (n);
- `SNAP`: `counts` positions picked by SnapKV's observation window (`select.py`), its window included (the
  window shrinks to the count when the budget is smaller);
- `WINDOW`: `counts` positions: the first `sink` real tokens, then the last positions (StreamingLLM's pattern;
  the recent part shrinks to what the budget leaves).
Every head keeps at least one position (the last), so a budget below 1 / n keeps one per head.
Tokens generated after the prompt are kept by every head, as in SnapKV and kvpress: the budget bounds the
compressed prompt (the share over prompt + answer is at most b + t / (n + t) for t new tokens).

The allocators (each policy in `policies/` calls one):
- `uniform_snap(n, b, ...)`: every head the same count, floor(b * n), at least 1 (the window shrinks to fit the count);
- `weighted_snap(n, b, weights, ...)`: HeadKV: each head a floor of the window, the rest of the total shared in
  proportion to the head's weight (its retrieval score), capped at n, a capped head's surplus shared again;
- `full_then(n, b, order, rest, ...)`: the first heads of `order` keep everything, as many as the budget allows
  after every other head's own share (`rest`: SNAP with the remainder split evenly, or WINDOW sink + recent).
Every allocator keeps sum(kept) <= total (tested), rounding down.

Importable without torch. Left out on purpose: the selection itself (`select.py`) and budgets over generated
tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParamError

FULL, SNAP, WINDOW = 0, 1, 2
MODE_NAMES = {FULL: "full", SNAP: "snap", WINDOW: "window"}


@dataclass(frozen=True)
class Allotment:
    """Per [layer, KV head]: `modes` (FULL, SNAP, WINDOW) and `counts` (prompt positions kept: n for FULL, the
    picked count for SNAP, min(n, sink + recent) for WINDOW). Rows of sliding-window layers are FULL and unused."""

    modes: np.ndarray  # [L, KV] int
    counts: np.ndarray  # [L, KV] int

    def kept(self, usable: np.ndarray) -> int:
        """Head-positions kept over the full-attention layers (`usable` [L] bool)."""
        return int(self.counts[usable].sum())


def check_budget(budget, param: str = "kv.budget") -> float:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < float(budget) <= 1:
        raise ParamError(param, budget, "give the share of the full cache's KV bytes to keep, above 0 and at most "
                         "1 (e.g. 0.2)")
    return float(budget)


def total(n: int, budget: float, heads: int) -> int:
    """Head-positions the budget allows for an n-token prompt over `heads` KV heads."""
    return int(np.floor(budget * n)) * heads


def _empty(shape: tuple[int, int], n: int) -> Allotment:
    return Allotment(np.full(shape, FULL, dtype=np.int64), np.full(shape, n, dtype=np.int64))


def uniform_snap(n: int, budget: float, usable: np.ndarray, KV: int, window: int) -> Allotment:
    """Every KV head of a full-attention layer SNAP with floor(b * n) positions (at least 1)."""
    out = _empty((len(usable), KV), n)
    k = min(n, max(1, int(np.floor(budget * n))))
    out.modes[usable] = SNAP if k < n else FULL
    out.counts[usable] = k
    return out


def weighted_snap(n: int, budget: float, usable: np.ndarray, weights: np.ndarray, window: int) -> Allotment:
    """HeadKV's allocation (module docstring); `weights` [L, KV] >= 0, one per KV head."""
    L, KV = weights.shape
    out = _empty((L, KV), n)
    idx = [(l, h) for l in range(L) if usable[l] for h in range(KV)]
    N = len(idx)
    if not N:
        return out
    floor = min(n, window, max(1, int(np.floor(budget * n))))  # every head its window (or its whole share)
    budget_total = max(total(n, budget, N), N)
    w = np.array([max(float(weights[lh]), 0.0) for lh in idx]) + 1e-12  # [N]
    alloc = np.full(N, floor, dtype=np.int64)
    free = np.ones(N, dtype=bool)
    left = budget_total - floor * N
    while left > 0 and free.any():
        share = np.floor(left * w * free / (w * free).sum()).astype(np.int64)  # [N]
        if not share.any():  # what is left is less than one position per weighted head: the heaviest get one each
            for i in np.argsort(-w * free, kind="stable")[: int(left)]:
                if free[i]:
                    share[i] = 1
        room = n - alloc
        share = np.minimum(share, room)
        alloc += share
        left -= int(share.sum())
        free &= alloc < n
        if not share.any():
            break
    for (l, h), k in zip(idx, alloc):
        out.modes[l, h], out.counts[l, h] = (SNAP if k < n else FULL), int(k)
    return out


def full_then(n: int, budget: float, usable: np.ndarray, KV: int, order: list[tuple[int, int]], rest: int,
              window: int, sink: int = 0, recent: int = 0, limit: int | None = None) -> Allotment:
    """The first heads of `order` FULL, as many as fit (at most `limit`); the others `rest` (SNAP: the remainder split
    evenly, at least the window; WINDOW: min(n, sink + recent) each)."""
    out = _empty((len(usable), KV), n)
    heads = [(l, h) for l in range(len(usable)) if usable[l] for h in range(KV)]
    N = len(heads)
    if not N:
        return out
    allowed = max(total(n, budget, N), N)
    share = max(1, int(np.floor(budget * n)))
    own = min(n, share, window if rest == SNAP else sink + recent)  # the least each other head keeps
    order = [lh for lh in order if lh in set(heads)][: (len(heads) if limit is None else limit)]
    F = 0
    while F < len(order) and (F + 1) * n + (N - F - 1) * own <= allowed:
        F += 1
    full = set(order[:F])
    others = [lh for lh in heads if lh not in full]
    if rest == SNAP and others:
        each = min(n, max(own, (allowed - F * n) // len(others)))
    else:
        each = own
    for lh in heads:
        if lh in full:
            out.modes[lh], out.counts[lh] = FULL, n
        else:
            out.modes[lh], out.counts[lh] = (FULL if each >= n else rest), each
    return out
