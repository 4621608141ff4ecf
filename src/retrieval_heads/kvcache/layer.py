"""The layer of the retrieval-head KV cache and its attention (`kvcache.py` builds the cache from these).

`RetrievalHeadLayer` is a transformers 5 cache layer for one full-attention layer: the KV heads in `full` grow as a
`DynamicLayer` would ([B, F, n, D]); the others (compressed) hold physically smaller tensors ([B, C, <= sink +
recent, D]): each batch row's first `sink` real tokens (attention sinks) and the last `recent` cache slots.

Attention. `update` returns a `SplitKV` instead of a key tensor; the `rheads` attention (`attention.py`) hands the
call to `SplitKV.rheads_attention`. There, the query heads of the full KV heads run transformers' own SDPA over
the full keys with the mask transformers built from `get_mask_sizes` (every slot, as a `DynamicLayer` reports
it). The query heads of the compressed KV heads attend, per batch row b and query at cache slot p, to the slots s
with
    s == p  or  (s real and s <= p and (s >= p - recent or s is one of row b's first `sink` real tokens)),
"real" meaning not padding, read from the diagonal of the mask transformers built (a padded token does not see
itself). So a query sees at most sink + recent + 1 keys, and once the row is longer than sink + recent the
layer holds exactly sink + recent slots per compressed head; when sink + recent covers the whole sequence
nothing is dropped and the output is the full cache's.
`prefill` says what the compressed heads see in a multi-token call (a prefill or a prefill chunk):
- "full" (default): everything the layer holds plus the call's tokens, causally (compress after prefill, as
  SnapKV and HeadKV do). A whole-prompt prefill is then exactly the full cache's attention; the layer keeps sink
  + recent of it. A chunk of a chunked prefill sees only what is still held (sinks, recent, itself);
- "window": the sink + recent pattern above, in prefill as in decoding (StreamingLLM, DuoAttention's streaming
  heads); the prefill then costs O(q (sink + recent)) for those heads.
Decoding steps (one token) always use the sink + recent pattern. Other than a whole-prompt "full" prefill (SDPA,
as the full cache), a multi-token call runs the compressed heads in query blocks (`block` rows), each over the
stored slots, the sinks among the new tokens and the new tokens of its window (all of them when the call sees
everything), so no [q, q] mask is built for them at once. Query head h belongs
to KV head h // (H // KV) (repeat_kv order); the G query heads of a KV head share one SDPA call ([B, C, G*q, D]
against [B, C, k, D]), with no repeat_kv copy. The compressed heads' state is committed after the attention (it
needs the padding read from the mask); a second `update` before that is refused (the model does not run the
`rheads` attention).

Left out on purpose: recording or ablating heads through a compressed layer (refused in one line: a query's keys
are not the cache slots the recorders index), logit soft-capping and attention sinks (`s_aux`, refused),
cropping (assisted decoding; refused), offloading, and expanding GQA groups to query heads (a KV head is full
for all its query heads or for none: the memory is per KV head).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import CacheLayerMixin

from ..errors import RHeadsError
from ..capture.attention import ATTN_NAME

_NO_RANK = 1 << 62  # rank of a padded slot or an empty sink entry: never a sink
PREFILL_MODES = ("full", "window")  # what compressed heads see in a multi-token call (module docstring)


def _as_index(heads: list[int]) -> slice | list[int]:
    """A slice when `heads` is a contiguous run (a view, no copy), else the list."""
    if heads and heads == list(range(heads[0], heads[-1] + 1)):
        return slice(heads[0], heads[-1] + 1)
    return heads


def _own(t: torch.Tensor) -> torch.Tensor:
    """`t`, copied when it is a view into a larger storage (so the cache never keeps what it dropped alive)."""
    if t.untyped_storage().nbytes() > t.numel() * t.element_size():
        return t.clone(memory_format=torch.contiguous_format)
    return t


def _take(x: torch.Tensor, idx: slice | list[int] | torch.Tensor, dim: int = 1) -> torch.Tensor:
    if isinstance(idx, slice):
        return x[(slice(None),) * dim + (idx,)]
    return x.index_select(dim, idx)


class RetrievalHeadLayer(CacheLayerMixin):
    """One full-attention layer: KV heads `full` keep every slot, the others sink + recent (module docstring)."""

    is_sliding = False
    is_compileable = False
    is_croppable = False

    def __init__(self, full: list[int], num_kv_heads: int, sink: int, recent: int, block: int = 512,
                 prefill: str = "full"):
        super().__init__()
        self.full = sorted(int(h) for h in full)
        self.comp = [h for h in range(num_kv_heads) if h not in set(self.full)]
        if not self.comp:
            raise ValueError("RetrievalHeadLayer needs at least one compressed KV head (use a DynamicLayer)")
        self.num_kv_heads, self.sink, self.recent, self.block = num_kv_heads, int(sink), int(recent), int(block)
        if prefill not in PREFILL_MODES:
            raise RHeadsError(f"unknown KV prefill mode '{prefill}': use one of {', '.join(PREFILL_MODES)}")
        self.prefill = prefill
        self.seen = 0  # slots processed (the sequence length the model sees)
        self.pending: SplitKV | None = None
        self._clear()

    def _clear(self) -> None:
        self.keys = self.values = None  # full KV heads [B, F, seen, D]
        self.ck = self.cv = None  # compressed KV heads [B, C, m, D], m <= max(seen, sink + recent)
        self.cpos = self.crank = self.cvalid = None  # per stored entry [B, m]: slot, rank among real slots, real
        self.nvalid = None  # [B] real slots so far per row
        self.all_real = True  # no padding seen yet
        self.sinks_done = False  # every row's sink part holds `sink` real entries (no gather needed any more)
        self.nsink = 0  # leading entries of ck that form the sink part (0 until the first eviction)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        B, KV, _, D = key_states.shape  # [B, KV, q, D]
        if KV != self.num_kv_heads:
            raise RHeadsError(f"the retrieval-head cache was built for {self.num_kv_heads} KV heads but the layer has "
                              f"{KV}: build it from this model")
        self.device, self.dtype = key_states.device, key_states.dtype
        self._full_idx = _as_index(self.full)
        self._comp_idx = _as_index(self.comp)
        if isinstance(self._full_idx, list):
            self._full_idx = torch.tensor(self._full_idx, device=self.device)
        if isinstance(self._comp_idx, list):
            self._comp_idx = torch.tensor(self._comp_idx, device=self.device)
        F, C = len(self.full), len(self.comp)
        self.keys = key_states.new_zeros(B, F, 0, D)  # [B, F, 0, D]
        self.values = value_states.new_zeros(B, F, 0, value_states.shape[-1])
        self.ck = key_states.new_zeros(B, C, 0, D)  # [B, C, 0, D]
        self.cv = value_states.new_zeros(B, C, 0, value_states.shape[-1])
        self.cpos = torch.zeros(B, 0, dtype=torch.long, device=self.device)  # [B, 0]
        self.crank = torch.zeros(B, 0, dtype=torch.long, device=self.device)
        self.cvalid = torch.zeros(B, 0, dtype=torch.bool, device=self.device)
        self.nvalid = torch.zeros(B, dtype=torch.long, device=self.device)  # [B]
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
            self.keys = torch.cat([self.keys, _take(key_states, self._full_idx)], dim=-2)  # [B, F, seen + q, D]
            self.values = torch.cat([self.values, _take(value_states, self._full_idx)], dim=-2)
        view = SplitKV(self, _take(key_states, self._comp_idx), _take(value_states, self._comp_idx), self.seen)
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
        self._clear()
        self.is_initialized = False

    def crop(self, tokens_to_remove: int) -> None:
        raise RHeadsError("the retrieval-head cache cannot be cropped (assisted decoding): use a DynamicCache there")

    def _map_batch(self, fn) -> None:
        for name in ("keys", "values", "ck", "cv", "cpos", "crank", "cvalid", "nvalid"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, fn(t))

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.is_initialized:
            self._map_batch(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._map_batch(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._map_batch(lambda t: t[indices])

    def offload(self):
        raise RHeadsError("the retrieval-head cache does not offload layers")

    def nbytes(self) -> int:
        """Bytes of the keys and values this layer holds now."""
        return sum(t.numel() * t.element_size() for t in (self.keys, self.values, self.ck, self.cv) if t is not None)

    # ------------------------------------------------------------------------------ compressed heads

    def _commit(self, keys: torch.Tensor, values: torch.Tensor, pos: torch.Tensor, rank: torch.Tensor,
                valid: torch.Tensor) -> None:
        """Keep, of the stored + new entries ([B, C, M, D]; pos/rank/valid [B, M]), each row's sinks and the last
        `recent` slots; everything while M <= sink + recent."""
        M = keys.shape[2]
        if M <= self.sink + self.recent:  # nothing to drop; own the storage (kc may be a view of the projection)
            self.ck, self.cv, self.cpos, self.crank, self.cvalid = _own(keys), _own(values), pos, rank, valid
            return
        cut = M - self.recent  # entries [cut, M) are the last `recent` slots
        if self.sinks_done and self.nsink == self.sink:  # the sink part is settled: drop the slots leaving the window
            sel = [slice(0, self.sink), slice(cut, M)]
            self.ck = torch.cat([keys[:, :, s] for s in sel], dim=2)  # [B, C, sink + recent, D]
            self.cv = torch.cat([values[:, :, s] for s in sel], dim=2)
            self.cpos, self.crank, self.cvalid = (torch.cat([t[:, s] for s in sel], dim=1) for t in (pos, rank, valid))
            return
        # per row, the first `sink` real slots before the window (their rank < sink); empty entries where fewer
        cand = valid[:, :cut] & (rank[:, :cut] < self.sink)  # [B, cut]
        order = torch.sort((~cand).to(torch.int8), dim=1, stable=True).indices[:, :self.sink]  # [B, sink]
        n = order.shape[1]
        got = cand.gather(1, order)  # [B, n]
        B, C, _, D = keys.shape
        gk = keys.gather(2, order[:, None, :, None].expand(B, C, n, D))  # [B, C, n, D]
        gv = values.gather(2, order[:, None, :, None].expand(B, C, n, values.shape[-1]))
        gpos = torch.where(got, pos.gather(1, order), -1)  # [B, n]
        grank = torch.where(got, rank.gather(1, order), _NO_RANK)
        self.ck = torch.cat([gk, keys[:, :, cut:]], dim=2)  # [B, C, n + recent, D]
        self.cv = torch.cat([gv, values[:, :, cut:]], dim=2)
        self.cpos = torch.cat([gpos, pos[:, cut:]], dim=1)  # [B, n + recent]
        self.crank = torch.cat([grank, rank[:, cut:]], dim=1)
        self.cvalid = torch.cat([got, valid[:, cut:]], dim=1)
        self.nsink = n
        self.sinks_done = bool(got.all())

    def _attend_compressed(self, qc: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, real: torch.Tensor, first: int,
                           scaling: float, module=None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of the compressed heads' queries qc [B, C*G, q, D] over sinks + window (or, in a multi-token
        call with prefill "full", everything held); commits the state. kc, vc [B, C, q, D]: this call's new slots
        first .. first + q - 1; real [B, q]: which are not padding. Returns [B, q, C*G, D]."""
        B, CG, q, D = qc.shape
        C = kc.shape[1]
        G = CG // C
        dev = qc.device
        m = self.ck.shape[2]
        new_pos = torch.arange(first, first + q, device=dev).expand(B, q)  # [B, q]
        new_rank = torch.where(real, self.nvalid[:, None] + real.long().cumsum(1) - 1, _NO_RANK)  # [B, q]
        keys = kc if m == 0 else torch.cat([self.ck, kc], dim=2)  # [B, C, m + q, D]
        values = vc if m == 0 else torch.cat([self.cv, vc], dim=2)
        pos = torch.cat([self.cpos, new_pos], dim=1)  # [B, m + q]
        rank = torch.cat([self.crank, new_rank], dim=1)
        valid = torch.cat([self.cvalid, real], dim=1)
        all_real = self.all_real and bool(real.all())
        out = qc.new_empty(B, q, CG, qc.shape[-1] if vc.shape[-1] == D else vc.shape[-1])  # [B, q, C*G, Dv]
        see_all = self.prefill == "full" and q > 1
        if see_all and m == 0 and first == 0:  # a whole-prompt prefill: the full cache's own attention
            from transformers.integrations.sdpa_attention import sdpa_attention_forward

            out, _ = sdpa_attention_forward(module, qc, kc, vc, attention_mask, dropout=0.0, scaling=scaling)
        elif q == 1 and all_real:  # decoding without padding: every stored entry is visible (sinks + window + self)
            qp = qc.reshape(B, C, G, D)  # [B, C*G, 1, D] -> [B, C, G, D]
            o = torch.nn.functional.scaled_dot_product_attention(qp, keys, values, scale=scaling)  # [B, C, G, Dv]
            out[:, 0] = o.reshape(B, CG, -1)
        else:
            # new entries that may be sinks of some row: the first `hs` of this call
            is_sink_new = real & (new_rank < self.sink)  # [B, q]
            cols = is_sink_new.any(0).nonzero()
            hs = int(cols[-1]) + 1 if cols.numel() else 0
            for i0 in range(0, q, self.block):
                i1 = min(q, i0 + self.block)
                lo = 0 if see_all else max(0, i0 - self.recent)  # row i0's window starts at new entry i0 - recent
                if hs >= lo:
                    sel = slice(0, m + i1)
                    k_b, v_b, pos_b, rank_b, valid_b = keys[:, :, sel], values[:, :, sel], pos[:, sel], rank[:, sel], \
                        valid[:, sel]
                else:  # stored + new sink candidates + the window: two runs of entries
                    runs = [slice(0, m + hs), slice(m + lo, m + i1)]
                    k_b = torch.cat([keys[:, :, s] for s in runs], dim=2)  # [B, C, k, D]
                    v_b = torch.cat([values[:, :, s] for s in runs], dim=2)
                    pos_b, rank_b, valid_b = (torch.cat([t[:, s] for s in runs], dim=1) for t in (pos, rank, valid))
                p = new_pos[:, i0:i1, None]  # [B, r, 1] query slots
                s_, r_, v_ = pos_b[:, None, :], rank_b[:, None, :], valid_b[:, None, :]  # [B, 1, k]
                vis = (s_ == p) | (v_ & (s_ <= p) & (see_all | (s_ >= p - self.recent) | (r_ < self.sink)))  # [B, r, k]
                r = i1 - i0
                qb = qc[:, :, i0:i1].reshape(B, C, G * r, D)  # [B, C*G, r, D] -> [B, C, G*r, D]
                mask = vis[:, None, None].expand(B, 1, G, r, vis.shape[-1]).reshape(B, 1, G * r, -1)  # [B, 1, G*r, k]
                o = torch.nn.functional.scaled_dot_product_attention(qb, k_b, v_b, attn_mask=mask, scale=scaling)
                out[:, i0:i1] = o.view(B, CG, r, -1).transpose(1, 2)  # [B, C, G*r, Dv] -> [B, r, C*G, Dv]
        self.nvalid = self.nvalid + real.long().sum(1)
        self.all_real = all_real
        self._commit(keys, values, pos, rank, valid)
        return out


def _real_slots(attention_mask: torch.Tensor | None, first: int, q: int, B: int, device) -> torch.Tensor:
    """[B, q] which of this call's slots are real tokens: the mask's diagonal (a padded token does not see itself)."""
    if attention_mask is None:
        return torch.ones(B, q, dtype=torch.bool, device=device)
    rows = torch.arange(q, device=attention_mask.device)
    m = attention_mask[:, 0]  # [B|1, q|1, k]
    diag = m[:, rows if m.shape[1] == q else 0, first + rows]  # [B|1, q]
    if diag.dtype != torch.bool:
        diag = diag == 0  # an additive mask: 0 where visible
    return diag.expand(B, q).to(device)


class SplitKV:
    """What a `RetrievalHeadLayer` returns as keys (and values): this call's new slots of its compressed heads,
    and the layer; `rheads_attention` is the attention of the whole layer (module docstring)."""

    def __init__(self, layer: RetrievalHeadLayer, kc: torch.Tensor, vc: torch.Tensor, first: int):
        self.layer, self.kc, self.vc, self.first = layer, kc, vc, first  # kc, vc [B, C, q, D]

    def rheads_attention(self, module, query: torch.Tensor, value, attention_mask: torch.Tensor | None, ctl,
                         **kwargs) -> tuple[torch.Tensor, None]:
        layer = self.layer
        layer.pending = None
        if ctl is not None and (ctl.recorders or ctl.ablate or ctl.collect):
            raise RHeadsError("recording or ablating heads is not supported with a compressed KV cache: run capture "
                              "and ablation with the full cache (--kv full)")
        if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
            raise RHeadsError("the retrieval-head cache does not support attention logit soft-capping or attention "
                              "sinks (s_aux): use --kv full for this model")
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        B, H, q, D = query.shape  # [B, H, q, D]
        KV = layer.num_kv_heads
        G = H // KV
        scaling = kwargs.get("scaling") or D ** -0.5
        qv = query.reshape(B, KV, G, q, D)  # [B, H, q, D] -> [B, KV, G, q, D] (repeat_kv order)
        real = _real_slots(attention_mask, self.first, q, B, query.device)  # [B, q]
        qc = _take(qv, layer._comp_idx).reshape(B, -1, q, D)  # [B, C, G, q, D] -> [B, C*G, q, D]
        oc = layer._attend_compressed(qc, self.kc, self.vc, real, self.first, scaling, module,
                                      attention_mask)  # [B, q, C*G, Dv]
        if not layer.full:
            return oc, None
        qf = _take(qv, layer._full_idx).reshape(B, -1, q, D)  # [B, F*G, q, D]
        of, _ = sdpa_attention_forward(module, qf, layer.keys, layer.values, attention_mask, dropout=0.0,
                                       scaling=scaling)  # [B, q, F*G, Dv]
        out = oc.new_empty(B, q, KV, G, oc.shape[-1])  # [B, q, KV, G, Dv]
        out[:, :, layer._full_idx] = of.view(B, q, -1, G, of.shape[-1])
        out[:, :, layer._comp_idx] = oc.view(B, q, -1, G, oc.shape[-1])
        return out.view(B, q, H, -1), None  # [B, q, KV, G, Dv] -> [B, q, H, Dv]
