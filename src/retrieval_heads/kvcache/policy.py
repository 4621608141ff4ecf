"""KV-cache policies: which KV heads of a model keep their full history, all behind one interface.

A policy is a small subclass of `KVPolicy` (as kvpress does with presses) that answers one question,
`full_kv_heads(model) -> [L, KV] bool`, and describes itself for result files (`describe()`); `kvcache.py`
turns that map into a cache (`build_cache(policy, model, sink, recent)`). Policies (`POLICIES`, by name):
- `full`: every KV head keeps everything; the cache is transformers' own `DynamicCache(config=...)`, the
  reference the others are measured against;
- `retrieval`: a KV head stays full when any query head of its group is a retrieval head (score above
  `threshold`, or among the `top` best query heads when top > 0); the rest keep sink + recent;
- `random`: the control: as many full KV heads, in full-attention layers, as `retrieval` keeps, drawn (seeded)
  from the KV heads that hold no retrieval head, so the cache holds the same bytes;
- `streaming`: every KV head of a full-attention layer on sink + recent (StreamingLLM).
Sliding-window layers are never compressed and never count (they keep their window whatever the policy).

Left out on purpose: the cache mechanics (`kvcache.py`, which imports this module, never the reverse), the
factory a run passes to `generate_batch` (`kvrun.py`), per-query-head budgets (a KV head is shared by its
group: keeping a query head means keeping its KV head) and learned or attention-score-based selection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RHeadsError
from ..heads.masks import check_dims, kv_mask
from ..heads.scores import HeadScores

SLIDING_TYPES = ("sliding_attention", "chunked_attention")
FULL_TYPE = "full_attention"


def layer_types(config) -> list[str]:
    """The model's per-layer attention types, as transformers' caches read them."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    return list(get_layer_types_and_kwargs(config.get_text_config(decoder=True))[0])


def kv_dims(model) -> tuple[int, int, int]:
    """(layers, query heads, KV heads) of a model."""
    text = model.config.get_text_config(decoder=True)
    H = text.num_attention_heads
    return text.num_hidden_layers, H, getattr(text, "num_key_value_heads", None) or H


def full_attention_layers(model) -> np.ndarray:
    """[L] bool: the layers a policy can compress (full attention; sliding layers keep their window)."""
    return np.array([t == FULL_TYPE for t in layer_types(model.config)], dtype=bool)


def load_scores(scores, model) -> np.ndarray:
    """[L, H] mean retrieval scores from a HeadScores, a path to scores.json (or its run dir), or an array; one
    line when they were made for a model of another shape."""
    L, H, _ = kv_dims(model)
    if scores is None:
        raise RHeadsError("this KV policy needs retrieval scores: pass --scores runs/<detect run>/scores.json")
    if isinstance(scores, (str, Path)):
        scores = HeadScores.load(scores)
    if isinstance(scores, HeadScores):
        check_dims(scores, L, H)
        return scores.mean()
    m = np.asarray(scores, dtype=float)
    if m.shape != (L, H):
        raise RHeadsError(f"the scores have shape {m.shape} but the model has {L} layers x {H} heads: use scores "
                          "detected on this model")
    return m


class KVPolicy:
    """The base: a policy names the KV heads that stay full; the cache and the description come from here."""

    name = "base"

    def full_kv_heads(self, model) -> np.ndarray:
        """[L, KV] bool: True where the KV head keeps its whole history."""
        raise NotImplementedError

    def params(self) -> dict:
        return {}

    def describe(self, model=None) -> dict:
        d = {"policy": self.name, **self.params()}
        if model is not None:
            full = self.full_kv_heads(model)
            usable = full_attention_layers(model)
            d["full_kv_heads"] = int(full[usable].sum())
            d["kv_heads"] = int(full[usable].size)
        return d


class FullPolicy(KVPolicy):
    """Every KV head keeps its history (its cache is transformers' own DynamicCache)."""

    name = "full"

    def full_kv_heads(self, model) -> np.ndarray:
        L, _, KV = kv_dims(model)
        return np.ones((L, KV), dtype=bool)


class StreamingPolicy(KVPolicy):
    """Every KV head of a full-attention layer on sink + recent (StreamingLLM)."""

    name = "streaming"

    def full_kv_heads(self, model) -> np.ndarray:
        L, _, KV = kv_dims(model)
        return np.zeros((L, KV), dtype=bool)


class RetrievalPolicy(KVPolicy):
    """A KV head stays full when a query head of its group is a retrieval head."""

    name = "retrieval"

    def __init__(self, scores, threshold: float = 0.1, top: int = 0):
        if top < 0:
            raise RHeadsError(f"--kv-top {top}: use a number of query heads >= 1, or 0 to use --kv-threshold")
        self.scores, self.threshold, self.top = scores, float(threshold), int(top)

    def params(self) -> dict:
        return {"threshold": self.threshold, "top": self.top}

    def retrieval_query_heads(self, model) -> np.ndarray:
        """[L, H] bool: the retrieval heads (above the threshold, or the top K)."""
        m = load_scores(self.scores, model)
        if self.top:
            order = sorted(np.ndindex(*m.shape), key=lambda lh: (-m[lh], lh))[:self.top]  # ties by layer, head
            mask = np.zeros(m.shape, dtype=bool)
            for lh in order:
                mask[lh] = True
            return mask
        return m > self.threshold

    def full_kv_heads(self, model) -> np.ndarray:
        _, _, KV = kv_dims(model)
        return kv_mask(self.retrieval_query_heads(model), KV)


class RandomPolicy(RetrievalPolicy):
    """As many full KV heads as `retrieval` keeps in full-attention layers, drawn from those holding no retrieval
    head (seeded)."""

    name = "random"

    def __init__(self, scores, threshold: float = 0.1, top: int = 0, seed: int = 0):
        super().__init__(scores, threshold, top)
        self.seed = int(seed)

    def params(self) -> dict:
        return {**super().params(), "seed": self.seed}

    def full_kv_heads(self, model) -> np.ndarray:
        retrieval = super().full_kv_heads(model)  # [L, KV]
        usable = full_attention_layers(model)[:, None] & np.ones_like(retrieval)  # [L, KV]
        n = int((retrieval & usable).sum())
        pool = [tuple(lk) for lk in np.argwhere(usable & ~retrieval)]
        if n > len(pool):
            raise RHeadsError(f"the random policy needs {n} KV heads outside the retrieval set but only {len(pool)} "
                              "exist: raise --kv-threshold or lower --kv-top")
        rng = np.random.default_rng(self.seed)
        out = np.zeros_like(retrieval)
        for i in rng.choice(len(pool), size=n, replace=False):
            out[pool[i]] = True
        return out


POLICIES: dict[str, type[KVPolicy]] = {p.name: p for p in (FullPolicy, RetrievalPolicy, RandomPolicy, StreamingPolicy)}


def make_policy(name: str, scores=None, *, threshold: float = 0.1, top: int = 0, seed: int = 0) -> KVPolicy:
    """A policy by name (`POLICIES`); `scores` for retrieval and random."""
    if name not in POLICIES:
        raise RHeadsError(f"unknown KV policy '{name}': use one of {', '.join(POLICIES)}")
    if name == "retrieval":
        return RetrievalPolicy(scores, threshold, top)
    if name == "random":
        return RandomPolicy(scores, threshold, top, seed)
    return POLICIES[name]()
