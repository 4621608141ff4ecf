"""The attention of a split cache layer: full KV heads over everything, compressed ones over sinks + window.

A `RetrievalHeadLayer`'s `update` returns a `SplitKV` instead of a key tensor; the `rheads` attention
(`capture/attention.py`) hands the call to `SplitKV.rheads_attention`. There, the query heads of the full KV
heads run transformers' own SDPA over the full keys with the mask transformers built from `get_mask_sizes` (every
slot, as a `DynamicLayer` reports it). The query heads of the compressed KV heads (`attend_compressed`) attend, per
batch row and query, to the entries the layer's eviction rule makes visible (`eviction.SinkRecent.visible`),
"real" meaning not padding, read from the diagonal of the mask transformers built (a padded token does not see
itself); then the rule keeps what stays (`keep`), once the padding is known.

`prefill` says what compressed heads see in a multi-token call (a prefill or a prefill chunk): "full" everything
the layer holds plus the call's tokens, causally (a whole-prompt prefill is then exactly the full cache's
attention, SDPA); "window" the sink + recent pattern, as in decoding. Decoding steps (one token, no padding) are
one SDPA call over everything held. Other multi-token calls run in query blocks (`block` rows), each over the
stored entries, the sink candidates among the new tokens and the new tokens of its window, so no [q, q] mask is
built at once. Query head h belongs to KV head h // (H // KV) (repeat_kv order); the G query heads of a KV head
share one SDPA call ([B, C, G*q, D] against [B, C, k, D]), with no repeat_kv copy.

Left out on purpose: recording or ablating heads (refused in one line: a query's keys are not the cache slots the
recorders index), logit soft-capping and attention sinks (`s_aux`, refused), and the storage and eviction
themselves (`storage.py`, `eviction.py`).
"""

from __future__ import annotations

import torch

from ..errors import RHeadsError
from .storage import NO_RANK, take


def real_slots(attention_mask: torch.Tensor | None, first: int, q: int, B: int, device) -> torch.Tensor:
    """[B, q] which of this call's slots are real tokens: the mask's diagonal (a padded token does not see itself)."""
    if attention_mask is None:
        return torch.ones(B, q, dtype=torch.bool, device=device)
    rows = torch.arange(q, device=attention_mask.device)
    m = attention_mask[:, 0]  # [B|1, q|1, k]
    diag = m[:, rows if m.shape[1] == q else 0, first + rows]  # [B|1, q]
    if diag.dtype != torch.bool:
        diag = diag == 0  # an additive mask: 0 where visible
    return diag.expand(B, q).to(device)


def attend_compressed(layer, qc: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, real: torch.Tensor, first: int,
                      scaling: float, module=None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of `layer`'s compressed heads' queries qc [B, C*G, q, D] over sinks + window (or, in a
    multi-token call with prefill "full", everything held); then the eviction keeps what stays. kc, vc
    [B, C, q, D]: this call's new slots first .. first + q - 1; real [B, q]: which are not padding.
    Returns [B, q, C*G, D]."""
    store, rule = layer.store, layer.eviction
    B, CG, q, D = qc.shape
    C = kc.shape[1]
    G = CG // C
    dev = qc.device
    m = store.ck.shape[2]
    new_pos = torch.arange(first, first + q, device=dev).expand(B, q)  # [B, q]
    new_rank = torch.where(real, store.nvalid[:, None] + real.long().cumsum(1) - 1, NO_RANK)  # [B, q]
    keys = kc if m == 0 else torch.cat([store.ck, kc], dim=2)  # [B, C, m + q, D]
    values = vc if m == 0 else torch.cat([store.cv, vc], dim=2)
    pos = torch.cat([store.cpos, new_pos], dim=1)  # [B, m + q]
    rank = torch.cat([store.crank, new_rank], dim=1)
    valid = torch.cat([store.cvalid, real], dim=1)
    all_real = store.all_real and bool(real.all())
    out = qc.new_empty(B, q, CG, qc.shape[-1] if vc.shape[-1] == D else vc.shape[-1])  # [B, q, C*G, Dv]
    see_all = layer.prefill == "full" and q > 1
    if see_all and m == 0 and first == 0:  # a whole-prompt prefill: the full cache's own attention
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        out, _ = sdpa_attention_forward(module, qc, kc, vc, attention_mask, dropout=0.0, scaling=scaling)
    elif q == 1 and all_real:  # decoding without padding: every stored entry is visible (sinks + window + self)
        qp = qc.reshape(B, C, G, D)  # [B, C*G, 1, D] -> [B, C, G, D]
        o = torch.nn.functional.scaled_dot_product_attention(qp, keys, values, scale=scaling)  # [B, C, G, Dv]
        out[:, 0] = o.reshape(B, CG, -1)
    else:
        # new entries that may be sinks of some row: the first `hs` of this call
        cols = rule.sink_candidates(real, new_rank).any(0).nonzero()  # [B, q] -> columns
        hs = int(cols[-1]) + 1 if cols.numel() else 0
        for i0 in range(0, q, layer.block):
            i1 = min(q, i0 + layer.block)
            lo = rule.window_start(i0, see_all)
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
            vis = rule.visible(p, pos_b[:, None, :], rank_b[:, None, :], valid_b[:, None, :], see_all)  # [B, r, k]
            r = i1 - i0
            qb = qc[:, :, i0:i1].reshape(B, C, G * r, D)  # [B, C*G, r, D] -> [B, C, G*r, D]
            mask = vis[:, None, None].expand(B, 1, G, r, vis.shape[-1]).reshape(B, 1, G * r, -1)  # [B, 1, G*r, k]
            o = torch.nn.functional.scaled_dot_product_attention(qb, k_b, v_b, attn_mask=mask, scale=scaling)
            out[:, i0:i1] = o.view(B, CG, r, -1).transpose(1, 2)  # [B, C, G*r, Dv] -> [B, r, C*G, Dv]
    store.nvalid = store.nvalid + real.long().sum(1)
    store.all_real = all_real
    rule.keep(store, keys, values, pos, rank, valid)
    return out


class SplitKV:
    """What a `RetrievalHeadLayer` returns as keys (and values): this call's new slots of its compressed heads,
    and the layer; `rheads_attention` is the attention of the whole layer (module docstring)."""

    def __init__(self, layer, kc: torch.Tensor, vc: torch.Tensor, first: int):
        self.layer, self.kc, self.vc, self.first = layer, kc, vc, first  # kc, vc [B, C, q, D]

    def rheads_attention(self, module, query: torch.Tensor, value, attention_mask: torch.Tensor | None, ctl,
                         **kwargs) -> tuple[torch.Tensor, None]:
        layer = self.layer
        layer.pending = None
        if ctl is not None and (ctl.recorders or ctl.ablate or ctl.collect):
            raise RHeadsError("recording or ablating heads is not supported with a compressed KV cache: run capture "
                              "and ablation with the full cache (KV policy full)")
        if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
            raise RHeadsError("the retrieval-head cache does not support attention logit soft-capping or attention "
                              "sinks (s_aux): use the full KV policy for this model")
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        B, H, q, D = query.shape  # [B, H, q, D]
        KV = layer.num_kv_heads
        G = H // KV
        scaling = kwargs.get("scaling") or D ** -0.5
        qv = query.reshape(B, KV, G, q, D)  # [B, H, q, D] -> [B, KV, G, q, D] (repeat_kv order)
        real = real_slots(attention_mask, self.first, q, B, query.device)  # [B, q]
        qc = take(qv, layer.comp_idx).reshape(B, -1, q, D)  # [B, C, G, q, D] -> [B, C*G, q, D]
        oc = attend_compressed(layer, qc, self.kc, self.vc, real, self.first, scaling, module,
                               attention_mask)  # [B, q, C*G, Dv]
        if not layer.full:
            return oc, None
        qf = take(qv, layer.full_idx).reshape(B, -1, q, D)  # [B, F*G, q, D]
        of, _ = sdpa_attention_forward(module, qf, layer.keys, layer.values, attention_mask, dropout=0.0,
                                       scaling=scaling)  # [B, q, F*G, Dv]
        out = oc.new_empty(B, q, KV, G, oc.shape[-1])  # [B, q, KV, G, Dv]
        out[:, :, layer.full_idx] = of.view(B, q, -1, G, of.shape[-1])
        out[:, :, layer.comp_idx] = oc.view(B, q, -1, G, oc.shape[-1])
        return out.view(B, q, H, -1), None  # [B, q, KV, G, Dv] -> [B, q, H, Dv]
