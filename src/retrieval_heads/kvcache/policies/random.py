"""The `random` policy, the control of `retrieval`: as many full KV heads in full-attention layers as `retrieval`
keeps, drawn (seeded) from the KV heads that hold no retrieval head, so the cache holds the same bytes.

At a budget: as many KV heads keep every position as `retrieval` keeps at that budget, in a seeded random order of
all KV heads (bytes matched: the same count for the same prompt).

Left out on purpose: several draws per run (one `seed`; run more seeds as more runs).
"""

from __future__ import annotations

import numpy as np

from ...errors import ParamError
from ..dims import full_attention_layers
from ..registry import register_policy
from .retrieval import RetrievalPolicy


@register_policy("random")
class RandomPolicy(RetrievalPolicy):
    """As many full KV heads as `retrieval` keeps in full-attention layers, drawn from those holding no retrieval
    head (seeded)."""

    help = "as many KV heads keep every token as retrieval keeps, drawn outside the retrieval set: its control"
    order = 20

    def __init__(self, scores, threshold: float = 0.1, top: int = 0, seed: int = 0):
        super().__init__(scores, threshold, top)
        self.seed = int(seed)

    @classmethod
    def from_config(cls, kv, scores=None) -> "RandomPolicy":
        return cls(scores, kv.threshold, kv.top, kv.seed)

    def params(self) -> dict:
        return {**super().params(), "seed": self.seed}

    def ranked_kv_heads(self, model) -> list[tuple[int, int]]:
        heads = super().ranked_kv_heads(model)
        order = np.random.default_rng(self.seed).permutation(len(heads))
        return [heads[i] for i in order]

    def full_kv_heads(self, model) -> np.ndarray:
        if self.budget is not None:
            return super().full_kv_heads(model)
        retrieval = super().full_kv_heads(model)  # [L, KV]
        usable = full_attention_layers(model)[:, None] & np.ones_like(retrieval)  # [L, KV]
        n = int((retrieval & usable).sum())
        pool = [tuple(lk) for lk in np.argwhere(usable & ~retrieval)]
        if n > len(pool):
            param, value = ("kv.top", self.top) if self.top else ("kv.threshold", self.threshold)
            raise ParamError(param, value, f"the random policy needs {n} KV heads outside the retrieval set but only "
                             f"{len(pool)} exist: raise {{kv.threshold}} or lower {{kv.top}}")
        rng = np.random.default_rng(self.seed)
        out = np.zeros_like(retrieval)
        for i in rng.choice(len(pool), size=n, replace=False):
            out[pool[i]] = True
        return out
