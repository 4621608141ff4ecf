"""KV-cache policies: which KV heads of a model keep their full history, all behind one interface.

A policy is a small subclass of `KVPolicy` (as kvpress does with presses) that answers one question,
`full_kv_heads(model) -> [L, KV] bool`; the shared base turns that map into a cache (`cache(model, sink,
recent)`) and describes itself for result files (`describe()`). Policies (`POLICIES`, by name):
- `full`: every KV head keeps everything; the cache is transformers' own `DynamicCache(config=...)`, the
  reference the others are measured against;
- `retrieval`: a KV head stays full when any query head of its group is a retrieval head (score above
  `threshold`, or among the `top` best query heads when top > 0); the rest keep sink + recent;
- `random`: the control: as many full KV heads, in full-attention layers, as `retrieval` keeps, drawn (seeded)
  from the KV heads that hold no retrieval head, so the cache holds the same bytes;
- `streaming`: every KV head of a full-attention layer on sink + recent (StreamingLLM).
Sliding-window layers are never compressed and never count (they keep their window whatever the policy).

Left out on purpose: the cache mechanics (`kvcache.py`), per-query-head budgets (a KV head is shared by its
group: keeping a query head means keeping its KV head) and learned or attention-score-based selection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RHeadsError
from ..heads.masks import check_dims
from ..heads.scores import HeadScores
from .kvcache import FULL_TYPE, RetrievalHeadCache, check_kv_model, check_window, layer_types
from .kvlayer import PREFILL_MODES


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

    def cache(self, model, sink: int = 4, recent: int = 256, prefill: str = "full"):
        """A fresh cache for one generate call (`prefill`: see kvlayer.py)."""
        check_window(sink, recent)
        return RetrievalHeadCache.from_policy(model, self, sink, recent, prefill)

    def factory(self, sink: int = 4, recent: int = 256, prefill: str = "full") -> "CacheFactory":
        check_window(sink, recent)
        return CacheFactory(self, sink, recent, prefill)


class FullPolicy(KVPolicy):
    """Every KV head keeps its history: transformers' own DynamicCache."""

    name = "full"

    def full_kv_heads(self, model) -> np.ndarray:
        L, _, KV = kv_dims(model)
        return np.ones((L, KV), dtype=bool)

    def cache(self, model, sink: int = 4, recent: int = 256, prefill: str = "full"):
        from transformers import DynamicCache

        return DynamicCache(config=model.config)


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
        from ..analysis.properties import kv_mask

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


class CacheFactory:
    """`decoding.generate_batch`'s `cache` argument: (model, batch size) -> a fresh cache of the policy; keeps the
    last one it made, so the caller can read what it held (`last.peak_bytes`)."""

    def __init__(self, policy: KVPolicy, sink: int, recent: int, prefill: str = "full"):
        if prefill not in PREFILL_MODES:
            raise RHeadsError(f"unknown --kv-prefill '{prefill}': use one of {', '.join(PREFILL_MODES)}")
        self.policy, self.sink, self.recent, self.prefill = policy, int(sink), int(recent), prefill
        self.last = None
        self._full: np.ndarray | None = None

    def check(self, model) -> None:
        """Fail before any work: the model's attention, the scores' shape, the policy's draw."""
        if self.policy.name != "full":
            check_kv_model(model)
        self.policy.full_kv_heads(model)

    def __call__(self, model, batch_size: int):
        if self.policy.name == "full":
            self.last = self.policy.cache(model)
        else:
            if self._full is None:  # the map depends only on the model: compute once
                check_kv_model(model)
                self._full = self.policy.full_kv_heads(model)
            self.last = RetrievalHeadCache(model.config, self._full, self.sink, self.recent, prefill=self.prefill)
        return self.last

    def held_bytes(self) -> int:
        """The most bytes the last cache held."""
        from .kvcache import cache_bytes

        if self.last is None:
            return 0
        return int(getattr(self.last, "peak_bytes", None) or cache_bytes(self.last))

    def usage(self, model, batch_size: int) -> dict:
        """Per sample of the last call: `kv_bytes` (the most the cache held) and `kv_bytes_full` (what the full
        cache holds for the same slots), each the batch's figure / batch size (rows share a padded width)."""
        from .kvcache import full_cache_bytes

        if self.last is None:
            return {}
        T = self.last.get_seq_length()  # slots fed to the model: prompt (padded width) + new tokens - 1
        elem = next(model.parameters()).element_size()
        full = full_cache_bytes(model.config, T, batch=batch_size, dtype_bytes=elem)
        return {"kv_bytes": self.held_bytes() // batch_size, "kv_bytes_full": full // batch_size}


def kv_factory(config, model, masked: bool = False) -> CacheFactory:
    """The cache factory of a run config with fields kv, scores, kv_sink, kv_recent, kv_threshold, kv_top, kv_seed,
    kv_prefill, prefill_chunk (NIAH, kv-sweep), checked against the model before any work. `masked`: heads are
    ablated in this run."""
    if masked and config.kv != "full":
        raise RHeadsError(f"--kv {config.kv} with a head mask: ablation needs the full cache; use one of the two")
    if config.kv != "full" and config.prefill_chunk and config.kv_prefill == "full":
        raise RHeadsError("--prefill-chunk with --kv-prefill full: a chunk cannot attend to the tokens the cache "
                          "already dropped; use --kv-prefill window with chunks, or no chunks")
    policy = make_policy(config.kv, config.scores, threshold=config.kv_threshold, top=config.kv_top,
                         seed=config.kv_seed)
    factory = policy.factory(config.kv_sink, config.kv_recent, config.kv_prefill)
    factory.check(model)
    return factory


def kv_summary(records: list[dict], config, model=None) -> dict:
    """summary.json keys: the policy, the most bytes the cache held over the samples (`kv_bytes`), what the full
    cache holds for the same prompts (`kv_bytes_full`), and the mean per-sample share kept (`kv_share`)."""
    from .kvcache import full_cache_bytes

    held, full = [], []
    for r in records:
        if "kv_bytes" in r:
            held.append(r["kv_bytes"])
            full.append(r["kv_bytes_full"])
        elif model is not None and config.kv == "full":  # a sample decoded before the cache was measured
            b = full_cache_bytes(model.config, r["prompt_length"] + r["new_tokens"] - 1,
                                 dtype_bytes=next(model.parameters()).element_size())
            held.append(b)
            full.append(b)
    policy = {"kv_policy": config.kv}
    if config.kv != "full":
        policy.update(kv_sink=config.kv_sink, kv_recent=config.kv_recent, kv_prefill=config.kv_prefill,
                      kv_threshold=config.kv_threshold,
                      kv_top=config.kv_top, **({"kv_seed": config.kv_seed} if config.kv == "random" else {}))
        if model is not None:
            policy.update({k: v for k, v in make_policy(config.kv, config.scores, threshold=config.kv_threshold,
                                                        top=config.kv_top, seed=config.kv_seed).describe(model).items()
                           if k in ("full_kv_heads", "kv_heads")})
    return {**policy, "kv_bytes": max(held) if held else None, "kv_bytes_full": max(full) if full else None,
            "kv_share": round(float(np.mean([h / f for h, f in zip(held, full)])), 4) if held else None}
