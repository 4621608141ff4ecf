"""`RetrievalHeadLayer`: the transformers 5 cache layer of one full-attention layer whose KV heads are split into
full ones (every slot) and compressed ones (sink + recent); `cache.py` builds the cache from these.

The layer only wires three parts together, each its own module:
- storage (`storage.SplitStorage`): the full heads' keys/values [B, F, n, D] and the compressed heads' smaller
  tensors [B, C, <= sink + recent, D] with their slots, ranks and padding;
- eviction (`eviction.SinkRecent`): each row's first `sink` real tokens (attention sinks) and the last `recent`
  cache slots are what a compressed head keeps, and what its queries see;
- attention (`split.py`): `update` appends the full heads' new slots and returns a `SplitKV` instead of a key
  tensor; the `rheads` attention hands the call to it, which attends both groups and then commits the
  compressed heads' state (it needs the padding read from the mask). A second `update` before that is refused
  (the model does not run the `rheads` attention).
`prefill` ("full" or "window", `config.PREFILL_MODES`) is what compressed heads see in a multi-token call
(`split.py`); `block` the query rows per block of such a call.

Left out on purpose: cropping (assisted decoding; refused), offloading, and expanding GQA groups to query heads
(a KV head is full for all its query heads or for none: the memory is per KV head).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import CacheLayerMixin

from ..capture.attention import ATTN_NAME
from ..errors import ParamError, RHeadsError
from .config import PREFILL_MODES
from .eviction import SinkRecent
from .split import SplitKV
from .storage import SplitStorage, as_index, take


class RetrievalHeadLayer(CacheLayerMixin):
    """One full-attention layer: KV heads `full` keep every slot, the others sink + recent (module docstring)."""

    is_sliding = False
    is_compileable = False
    is_croppable = False

    def __init__(self, full: list[int], num_kv_heads: int, sink: int, recent: int, block: int = 512,
                 prefill: str = "full"):
        self.store = SplitStorage()
        super().__init__()
        self.full = sorted(int(h) for h in full)
        self.comp = [h for h in range(num_kv_heads) if h not in set(self.full)]
        if not self.comp:
            raise ValueError("RetrievalHeadLayer needs at least one compressed KV head (use a DynamicLayer)")
        self.num_kv_heads, self.block = num_kv_heads, int(block)
        self.eviction = SinkRecent(sink, recent)
        if prefill not in PREFILL_MODES:
            raise ParamError("kv.prefill", prefill, f"use one of {', '.join(PREFILL_MODES)}")
        self.prefill = prefill
        self.seen = 0  # slots processed (the sequence length the model sees)
        self.pending: SplitKV | None = None

    # the full heads are the layer's `keys` / `values` (as transformers' layers name them); the rest is storage
    keys = property(lambda self: self.store.keys, lambda self, t: setattr(self.store, "keys", t))
    values = property(lambda self: self.store.values, lambda self, t: setattr(self.store, "values", t))
    ck = property(lambda self: self.store.ck, doc="compressed heads' keys [B, C, m, D]")
    cv = property(lambda self: self.store.cv, doc="compressed heads' values [B, C, m, D]")
    sink = property(lambda self: self.eviction.sink)
    recent = property(lambda self: self.eviction.recent)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        KV = key_states.shape[1]  # [B, KV, q, D]
        if KV != self.num_kv_heads:
            raise RHeadsError(f"the retrieval-head cache was built for {self.num_kv_heads} KV heads but the layer has "
                              f"{KV}: build it from this model")
        self.device, self.dtype = key_states.device, key_states.dtype
        self.full_idx, self.comp_idx = as_index(self.full), as_index(self.comp)
        if isinstance(self.full_idx, list):
            self.full_idx = torch.tensor(self.full_idx, device=self.device)
        if isinstance(self.comp_idx, list):
            self.comp_idx = torch.tensor(self.comp_idx, device=self.device)
        self.store.allocate(key_states, value_states, len(self.full), len(self.comp))
        self.is_initialized = True

    # ------------------------------------------------------------------------------ the Cache layer API

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append the full heads' new slots; return a `SplitKV` for the attention, which commits the rest."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.pending is not None:
            raise RHeadsError(f"the retrieval-head cache was updated again before the '{ATTN_NAME}' attention used it: "
                              "load the model with retrieval_heads.load_model or call use_rheads(model)")
        q = key_states.shape[2]
        if self.full:
            self.store.append_full(take(key_states, self.full_idx), take(value_states, self.full_idx))
        view = SplitKV(self, take(key_states, self.comp_idx), take(value_states, self.comp_idx), self.seen)
        self.seen += q
        self.pending = view
        return view, view

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """Every slot, from 0: the mask of the full heads, as a `DynamicLayer` reports it."""
        return self.seen + query_length, 0

    def get_seq_length(self) -> int:
        return self.seen

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.seen, self.pending = 0, None
        self.store.clear()
        self.is_initialized = False

    def crop(self, tokens_to_remove: int) -> None:
        raise RHeadsError("the retrieval-head cache cannot be cropped (assisted decoding): use a DynamicCache there")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.is_initialized:
            self.store.map_batch(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self.store.map_batch(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.store.map_batch(lambda t: t[indices])

    def offload(self):
        raise RHeadsError("the retrieval-head cache does not offload layers")

    def nbytes(self) -> int:
        """Bytes of the keys and values this layer holds now."""
        return self.store.nbytes()
