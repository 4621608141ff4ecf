"""The retrieval-head KV cache: full history for the KV heads a policy keeps, sink + recent for the rest.

`RetrievalHeadCache` is a transformers 5 `Cache` built from a [layers, KV heads] boolean map of the KV heads that
keep their whole history (a `KVPolicy` makes that map; `policy.py`, `policies/`). Per layer:
- a full-attention layer where every KV head stays full is a plain `DynamicLayer`;
- a full-attention layer with heads to compress is a `RetrievalHeadLayer` (`layer.py`: storage, sink + recent
  eviction, and its own attention that splits each layer's query groups by KV head);
- a sliding-window or chunked layer stays as the model defines it (`DynamicSlidingWindowLayer`);
- any other layer type (linear attention, KV sharing, ...) is refused in one line.

One cache per `generate` call:

    cache = RetrievalHeadCache.from_scores(model, "runs/smollm2/scores.json", sink=4, recent=256)
    out = model.generate(ids, max_new_tokens=32, cache=cache)

(`cache=` is transformers 5's name; `past_key_values=` still works but warns.) A used cache passed to a second
`generate` is refused in one line (generate would continue from the tokens it holds, with another prompt):
build a fresh one, or call `cache.reset()` first, which empties it (same output as a fresh cache).
`build_cache(policy, model, ...)` gives any policy's cache (the policy builds it: `full`'s is transformers'
own `DynamicCache`).

Bytes: `nbytes()` is what the cache holds now (keys and values of every layer), `peak_bytes` the most it
held; `expected_bytes` and `full_cache_bytes` are the analytic formulas the tests check them against.

Prefill: `prefill="full"` (default) runs the prompt's prefill with full attention in every head and keeps sink +
recent of it, so memory is saved from the first decoding step on; `prefill="window"` applies the sink + recent
pattern during prefill too. Chunked prefill: `prefill_chunking(model, n)` sets
`generation_config.prefill_chunk_size` for the duration (transformers' generate then prefills n tokens per
forward); with "window" that also lowers the prefill's peak. Without chunks the prefill's peak is the model's
activations for the whole prompt plus one layer's uncompressed keys and values on top of the compressed cache;
the cache itself never holds more than its budget.

Left out on purpose: static/compiled caches, quantization, offloading, the layer mechanics (`layer.py`,
`storage.py`, `eviction.py`, `split.py`) and the per-run factory and summary keys (`factory.py`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicLayer, DynamicSlidingWindowLayer

from ..capture.attention import ATTN_NAME
from ..errors import ParamError, RHeadsError
from .config import KVConfig, check_window
from .dims import FULL_TYPE, SLIDING_TYPES
from .layer import RetrievalHeadLayer
from .split import SplitKV  # noqa: F401 (re-exported)


class OneCallCache(Cache):
    """What every compressing cache of this package shares: one `generate` call per cache (a used cache is
    refused when generate starts; `reset()` empties it), and its bytes now and at their peak."""

    _in_generate = False

    @property
    def _is_user_defined(self) -> bool:
        return self._in_generate

    @_is_user_defined.setter
    def _is_user_defined(self, value: bool) -> None:  # set by generate at its start: refuse a used cache there
        if value and self.get_seq_length() > 0 and not getattr(self, "_continues", False):
            raise RHeadsError(f"this {type(self).__name__} already holds {self.get_seq_length()} tokens of an earlier "
                              "generate call: build a fresh cache per call, or call cache.reset() first")
        self._in_generate = bool(value)
        if value:
            self._continues = False  # a cache loaded from a shared prefill (`shared.py`) continues one call only

    def reset(self) -> None:
        """Empty every layer (and the peak), so the cache can serve another generate call."""
        super().reset()
        self._peak = 0

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        out = super().update(key_states, value_states, layer_idx, *args, **kwargs)
        if layer_idx == len(self.layers) - 1:  # end of a forward: the cache only grows, so its size now is its peak
            self._peak = max(getattr(self, "_peak", 0), self.nbytes())
        return out

    def nbytes(self) -> int:
        """Bytes of keys and values held now."""
        return sum(cache_layer_bytes(layer) for layer in self.layers)

    @property
    def peak_bytes(self) -> int:
        """The most bytes the cache held (checked at the end of each forward and now)."""
        return max(getattr(self, "_peak", 0), self.nbytes())


class RetrievalHeadCache(OneCallCache):
    """A `Cache` whose full-attention layers keep the full history only for the KV heads marked in `full_heads`
    ([L, KV] bool); see the module docstring. One per `generate` call (or `reset()` between calls)."""

    def __init__(self, config, full_heads: np.ndarray, sink: int = 4, recent: int = 256, block: int = 512,
                 prefill: str = "full"):
        self._in_generate = False  # transformers' generate marks the cache (`_is_user_defined`) when it starts
        check_window(sink, recent)
        text = config.get_text_config(decoder=True)
        L, KV = text.num_hidden_layers, getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        full_heads = np.asarray(full_heads, dtype=bool)
        if full_heads.shape != (L, KV):
            raise RHeadsError(f"the KV-head map has shape {tuple(full_heads.shape)} but the model has {L} layers x "
                              f"{KV} KV heads: build it for this model")
        from transformers.cache_utils import get_layer_types_and_kwargs

        types, kwargs = get_layer_types_and_kwargs(text)
        layers: list[CacheLayerMixin] = []
        for l, (t, kw) in enumerate(zip(types, kwargs)):
            if t == FULL_TYPE:
                full = [int(h) for h in np.nonzero(full_heads[l])[0]]
                layers.append(DynamicLayer() if len(full) == KV else
                              RetrievalHeadLayer(full, KV, sink, recent, block=block, prefill=prefill))
            elif t in SLIDING_TYPES:
                layers.append(DynamicSlidingWindowLayer(**kw))
            else:
                raise RHeadsError(f"layer {l} of this model is a '{t}' layer: the retrieval-head cache supports "
                                  "full-attention and sliding-window layers only; use the full KV policy")
        super().__init__(layers=layers)
        self.full_heads, self.sink, self.recent, self.prefill = full_heads, int(sink), int(recent), prefill
        self.layer_types = list(types)
        self._peak = 0

    @classmethod
    def from_scores(cls, model, scores, sink: int = 4, recent: int = 256, *, policy: str = "retrieval",
                    threshold: float = 0.1, top: int = 0, seed: int = 0, prefill: str = "full") -> "RetrievalHeadCache":
        """The cache of a registered policy drawn from retrieval scores: a HeadScores, a scores.json path or an
        [L, H] array. With `retrieval`, a KV head stays full when a query head of its group is a retrieval head
        (score above `threshold`, or among the `top` best when top > 0)."""
        kv = KVConfig(policy=policy, sink=sink, recent=recent, threshold=threshold, top=top, seed=seed,
                      prefill=prefill).validate(scores)
        return cls.from_policy(model, kv.build_policy(scores), sink, recent, prefill)

    @classmethod
    def from_policy(cls, model, policy, sink: int = 4, recent: int = 256,
                    prefill: str = "full") -> "RetrievalHeadCache":
        """The cache of a `KVPolicy` for this model (checked: the window, the model's attention)."""
        check_window(sink, recent)
        check_kv_model(model)
        return cls(model.config, policy.full_kv_heads(model), sink, recent, prefill=prefill)



def build_cache(policy, model, sink: int = 4, recent: int = 256, prefill: str = "full"):
    """A fresh cache of a `KVPolicy` for one generate call, built by the policy (checked against the model)."""
    policy.check_model(model)
    return policy.build_cache(model, sink, recent, prefill)


def cache_layer_bytes(layer) -> int:
    own = getattr(layer, "nbytes", None)  # this package's layers count their own storage
    if callable(own):
        return own()
    return sum(t.numel() * t.element_size() for t in (layer.keys, layer.values) if t is not None)


def cache_bytes(cache) -> int:
    """Bytes of keys and values held by any transformers cache (a RetrievalHeadCache or a DynamicCache)."""
    return sum(cache_layer_bytes(layer) for layer in cache.layers)


def check_kv_model(model) -> None:
    """One line when the model does not run the registered attention a compressed cache needs."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != ATTN_NAME:
        raise RHeadsError(f"a compressed KV cache needs the '{ATTN_NAME}' attention but the model uses '{impl}': "
                          "load it with retrieval_heads.load_model or call "
                          "retrieval_heads.capture.attention.use_rheads(model)")


def _dims(config) -> tuple[int, int, int, list[str], list[dict]]:
    from transformers.cache_utils import get_layer_types_and_kwargs

    text = config.get_text_config(decoder=True)
    H = text.num_attention_heads
    KV = getattr(text, "num_key_value_heads", None) or H
    D = getattr(text, "head_dim", None) or text.hidden_size // H
    types, kwargs = get_layer_types_and_kwargs(text)
    return KV, D, H, list(types), list(kwargs)


def expected_bytes(config, full_heads: np.ndarray | None, tokens: int, sink: int = 4, recent: int = 256,
                   batch: int = 1, dtype_bytes: int = 4) -> int:
    """What a cache holds after `tokens` slots (keys + values): full KV heads T slots, compressed ones
    min(T, sink + recent), sliding layers min(T, window - 1); `full_heads` None: the full cache."""
    KV, D, _, types, kwargs = _dims(config)
    slots = 0  # head-slots
    for l, (t, kw) in enumerate(zip(types, kwargs)):
        if t in SLIDING_TYPES:
            slots += KV * min(tokens, kw["sliding_window"] - 1)
        else:
            f = KV if full_heads is None else int(np.asarray(full_heads)[l].sum())
            slots += f * tokens + (KV - f) * min(tokens, sink + recent)
    return 2 * batch * D * dtype_bytes * slots


def full_cache_bytes(config, tokens: int, batch: int = 1, dtype_bytes: int = 4) -> int:
    """What transformers' DynamicCache(config=...) holds after `tokens` slots."""
    return expected_bytes(config, None, tokens, batch=batch, dtype_bytes=dtype_bytes)


@contextmanager
def prefill_chunking(model, chunk: int | None) -> Iterator[None]:
    """Prefill `chunk` tokens per forward in `model.generate` for the duration (None or 0: the whole prompt)."""
    if chunk is not None and chunk < 0:
        raise ParamError("kv.prefill_chunk", chunk, "use a positive number of tokens, or 0 for no chunking")
    gc = model.generation_config
    old = getattr(gc, "prefill_chunk_size", None)
    gc.prefill_chunk_size = int(chunk) if chunk else None
    try:
        yield
    finally:
        gc.prefill_chunk_size = old
