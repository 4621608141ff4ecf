"""The retrieval-head KV cache: full history for the KV heads that feed a retrieval head, sink + recent for the rest.

`RetrievalHeadCache` is a transformers 5 `Cache` built from a [layers, KV heads] boolean map of the KV heads that
keep their whole history (`kvpolicy.py` makes that map: full, retrieval, random or streaming; this module imports
it, never the reverse). Per layer:
- a full-attention layer where every KV head stays full is a plain `DynamicLayer`;
- a full-attention layer with heads to compress is a `RetrievalHeadLayer` (`kvlayer.py`: the full KV heads grow,
  the others hold physically smaller tensors of each row's first `sink` real tokens and the last `recent` slots,
  and its own attention splits each layer's query groups by KV head);
- a sliding-window or chunked layer stays as the model defines it (`DynamicSlidingWindowLayer`);
- any other layer type (linear attention, KV sharing, ...) is refused in one line.
Build one per `generate` call: `RetrievalHeadCache.from_scores(model, scores, sink=4, recent=256)`, then
`model.generate(..., past_key_values=cache)` (or `cache=cache`); `build_cache(policy, model, ...)` gives any
policy's cache (the `full` policy's is transformers' own `DynamicCache`).

Bytes: `nbytes()` is what the cache holds now (keys and values of every layer), `peak_bytes` the most it
held; `expected_bytes` and `full_cache_bytes` are the analytic formulas the tests check them against.

Prefill: `prefill="full"` (default) runs the prompt's prefill with full attention in every head and keeps sink +
recent of it; `prefill="window"` applies the sink + recent pattern during prefill too (`kvlayer.py`).
Chunked prefill: `prefill_chunking(model, n)` sets `generation_config.prefill_chunk_size` for the duration
(transformers' generate then prefills n tokens per forward). Without it the prefill's peak is the model's
activations for the whole prompt plus one layer's uncompressed keys and values (the k/v projection of the prompt)
on top of the compressed cache; the cache itself never holds more than its budget.

Left out on purpose: static/compiled caches, quantization, offloading, the attention arithmetic
(`kvlayer.py`) and the per-run factory and summary keys (`kvrun.py`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicLayer, DynamicSlidingWindowLayer

from ..errors import RHeadsError
from ..capture.attention import ATTN_NAME
from .layer import RetrievalHeadLayer, SplitKV  # noqa: F401 (re-exported)
from .policy import FULL_TYPE, SLIDING_TYPES, KVPolicy, make_policy


class RetrievalHeadCache(Cache):
    """A `Cache` whose full-attention layers keep the full history only for the KV heads marked in `full_heads`
    ([L, KV] bool); see the module docstring. Build one per `generate` call."""

    def __init__(self, config, full_heads: np.ndarray, sink: int = 4, recent: int = 256, block: int = 512,
                 prefill: str = "full"):
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
                                  "full-attention and sliding-window layers only; use --kv full")
        super().__init__(layers=layers)
        self.full_heads, self.sink, self.recent, self.prefill = full_heads, int(sink), int(recent), prefill
        self.layer_types = list(types)
        self._peak = 0

    @classmethod
    def from_scores(cls, model, scores, sink: int = 4, recent: int = 256, *, policy: str = "retrieval",
                    threshold: float = 0.1, top: int = 0, seed: int = 0, prefill: str = "full") -> "RetrievalHeadCache":
        """The cache of a policy (`kvpolicy.POLICIES`) drawn from retrieval scores: a HeadScores, a scores.json
        path or an [L, H] array. A KV head stays full when a query head of its group is a retrieval head (score
        above `threshold`, or among the `top` best when top > 0)."""
        return cls.from_policy(model, make_policy(policy, scores, threshold=threshold, top=top, seed=seed), sink,
                               recent, prefill)

    @classmethod
    def from_policy(cls, model, policy: KVPolicy, sink: int = 4, recent: int = 256,
                    prefill: str = "full") -> "RetrievalHeadCache":
        check_window(sink, recent)
        check_kv_model(model)
        return cls(model.config, policy.full_kv_heads(model), sink, recent, prefill=prefill)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        out = super().update(key_states, value_states, layer_idx, *args, **kwargs)
        if layer_idx == len(self.layers) - 1:  # end of a forward: the cache only grows, so its size now is its peak
            self._peak = max(self._peak, self.nbytes())
        return out

    def nbytes(self) -> int:
        """Bytes of keys and values held now."""
        return sum(cache_layer_bytes(layer) for layer in self.layers)

    @property
    def peak_bytes(self) -> int:
        """The most bytes the cache held (checked at the end of each forward and now)."""
        return max(self._peak, self.nbytes())


def build_cache(policy: KVPolicy, model, sink: int = 4, recent: int = 256, prefill: str = "full"):
    """A fresh cache of `policy` for one generate call: transformers' own `DynamicCache` for `full`, else a
    `RetrievalHeadCache`."""
    if policy.name == "full":
        from transformers import DynamicCache

        return DynamicCache(config=model.config)
    return RetrievalHeadCache.from_policy(model, policy, sink, recent, prefill)


def cache_layer_bytes(layer) -> int:
    if isinstance(layer, RetrievalHeadLayer):
        return layer.nbytes()
    return sum(t.numel() * t.element_size() for t in (layer.keys, layer.values) if t is not None)


def cache_bytes(cache) -> int:
    """Bytes of keys and values held by any transformers cache (a RetrievalHeadCache or a DynamicCache)."""
    return sum(cache_layer_bytes(layer) for layer in cache.layers)


def check_window(sink: int, recent: int) -> None:
    if sink < 0 or recent < 0 or sink + recent < 1:
        raise RHeadsError(f"--sink {sink} and --recent {recent}: both must be >= 0 and sink + recent >= 1 (e.g. "
                          "--sink 4 --recent 256)")


def check_kv_model(model) -> None:
    """One line when the model does not run the registered attention a compressed cache needs."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != ATTN_NAME:
        raise RHeadsError(f"--kv needs the '{ATTN_NAME}' attention but the model uses '{impl}': load it with "
                          "retrieval_heads.load_model or call retrieval_heads.capture.attention.use_rheads(model)")


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
        raise RHeadsError(f"--prefill-chunk {chunk}: use a positive number of tokens, or 0 for no chunking")
    gc = model.generation_config
    old = getattr(gc, "prefill_chunk_size", None)
    gc.prefill_chunk_size = int(chunk) if chunk else None
    try:
        yield
    finally:
        gc.prefill_chunk_size = old
