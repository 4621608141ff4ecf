"""The budget cache: after one whole-prompt prefill, each KV head keeps its own set of prompt positions (every
one, SnapKV's pick, or sink + recent: `budget.py`'s `Allotment`), then keeps every generated token.

`SelectCache(config, allot, ...)` is a transformers 5 `Cache`: full-attention layers are `SelectLayer`s,
sliding-window layers stay the model's own. `allot(n) -> Allotment` is asked once per prompt width n (the
policy's allocator, `policies/`). A `SelectLayer.update` returns a `SelectKV`; the `rheads` attention
(`capture/attention.py`) hands the call to its `rheads_attention`:
- the prefill (the layer's first call, the whole prompt): transformers' own SDPA over every slot with the mask
  transformers built, so its outputs are exactly the full cache's; then each head keeps its positions;
- SnapKV's pick (`snap_scores`): the last `window` prompt queries' attention (softmax over the real, causal keys,
  summed over the window's rows and the KV head's query group), average-pooled over positions (kernel `kernel`,
  stride 1, zero padding, as SnapKV's `avg_pool1d`), and the top (count - window) prefix positions by that,
  plus the window itself (Li et al. 2024; defaults `SNAP_WINDOW` = 32, `SNAP_KERNEL` = 7);
- decoding (one token per call): per KV head, its G query heads attend to that head's kept entries plus the new
  token (padding rows' pad entries masked), and the new token is appended to every head.
Per batch row the picks are its own: a row of a left-padded batch picks from its own real tokens with the
allotment of its own length, as it would alone and unpadded (so each row stays within its budget, and its answer
does not depend on the rows beside it); per head the rows are padded to the longest count with entries never
attended. Bytes: `nbytes()` is what the layer
holds (`select_bytes` is the formula the tests check it against).

Refused in one line: a prompt fed in chunks (the pick needs the whole prompt in one call), a multi-token call
after the prefill (assisted decoding), recording or ablating heads, soft-capping and attention sinks.
Left out on purpose: re-selecting during decoding, and the allocation of budgets (`budget.py`).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers.cache_utils import CacheLayerMixin, DynamicSlidingWindowLayer

from ..capture.attention import ATTN_NAME
from ..errors import RHeadsError
from .budget import FULL, SNAP, Allotment
from .cache import OneCallCache, _dims
from .dims import FULL_TYPE, SLIDING_TYPES
from .split import real_slots

SNAP_WINDOW = 32  # SnapKV's observation window: the last prompt tokens whose attention picks what stays
SNAP_KERNEL = 7  # SnapKV's pooling kernel over positions


def snap_scores(query: torch.Tensor, keys: torch.Tensor, real: torch.Tensor, window: int, kernel: int,
                scaling: float) -> torch.Tensor:
    """[B, KV, n - w] pooled observation-window attention of every prefix position (-inf for padding), from the
    prompt's last m >= w queries [B, H, m, D] (all n, or the window a shared prefill kept), keys [B, KV, n, D] and
    real [B, n] (module docstring); w = min(window, n)."""
    B, H, m, D = query.shape
    KV, n = keys.shape[1], keys.shape[2]
    G = H // KV
    w = min(window, n)
    if m < w:
        raise RHeadsError(f"SnapKV's pick needs the last {w} prompt queries but got {m}: keep the whole window")
    qo = query[:, :, m - w:].reshape(B, KV, G * w, D).float()  # [B, H, w, D] -> [B, KV, G*w, D]
    logits = qo @ keys.float().transpose(-1, -2) * scaling  # [B, KV, G*w, n]
    rows = torch.arange(n - w, n, device=query.device)  # absolute slots of the window's queries
    cols = torch.arange(n, device=query.device)
    vis = (cols[None, :] <= rows[:, None])[None] & real[:, None, :]  # [B, w, n]
    vis = vis[:, None, None].expand(B, 1, G, w, n).reshape(B, 1, G * w, n)  # [B, 1, G*w, n]
    probs = torch.softmax(logits.masked_fill(~vis, float("-inf")), dim=-1)  # [B, KV, G*w, n]
    probs = torch.nan_to_num(probs)  # a padded window row sees nothing: 0, not NaN
    summed = probs.sum(dim=2)[..., : n - w]  # [B, KV, n - w]
    if n - w == 0:
        return summed
    pooled = torch.nn.functional.avg_pool1d(summed, kernel_size=kernel, stride=1, padding=kernel // 2)
    pooled = pooled[..., : n - w]  # an even kernel pads one more on the right
    return pooled.masked_fill(~real[:, None, : n - w], float("-inf"))  # [B, KV, n - w]


def _sinks(real: torch.Tensor, sink: int, before: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, sink] slots of each row's first `sink` real tokens among slots < `before`, and whether each exists."""
    cand = real[:, :before] & (real[:, :before].long().cumsum(1) <= sink)  # [B, before]
    order = torch.sort((~cand).to(torch.int8), dim=1, stable=True).indices[:, :sink]  # [B, <= sink]
    return order, cand.gather(1, order)


class SelectLayer(CacheLayerMixin):
    """One full-attention layer of a `SelectCache` (module docstring)."""

    is_sliding = False
    is_compileable = False
    is_croppable = False

    def __init__(self, settings: "SelectSettings", layer_idx: int, num_kv_heads: int):
        super().__init__()
        # its cache's settings, not the cache: a layer -> cache reference would make a cycle (`SelectSettings`)
        self.settings, self.layer_idx, self.num_kv_heads = settings, layer_idx, num_kv_heads
        self.reset()

    def reset(self) -> None:
        self.k: list[torch.Tensor] | None = None  # per KV head [B, m_h, D]
        self.v: list[torch.Tensor] | None = None
        self.valid: list[torch.Tensor] | None = None  # per KV head [B, m_h] bool
        self.kept: list[torch.Tensor] | None = None  # per KV head [B, c_h]: the prompt slots kept (-1: none)
        self.seen = 0
        self.pending = None
        self.is_initialized = False

    def lazy_initialization(self, key_states, value_states) -> None:
        self.device, self.dtype = key_states.device, key_states.dtype
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.pending is not None:
            raise RHeadsError(f"the budget KV cache was updated again before the '{ATTN_NAME}' attention used it: "
                              "load the model with retrieval_heads.load_model or call use_rheads(model)")
        if key_states.shape[1] != self.num_kv_heads:
            raise RHeadsError(f"the budget KV cache was built for {self.num_kv_heads} KV heads but the layer has "
                              f"{key_states.shape[1]}: build it from this model")
        q = key_states.shape[2]
        if self.k is not None and q != 1:
            raise RHeadsError("the budget KV cache decodes one token per call after its prefill (no prefill chunks, "
                              "no assisted decoding): feed the whole prompt at once, or use the full cache")
        if self.seen and self.settings.captured is not None:
            raise RHeadsError("a shared-prefill capture serves the prompt's one forward: derive each policy's cache "
                              "from it (kvcache.shared.derive_cache) and decode with that")
        view = SelectKV(self, key_states, value_states, self.seen)
        self.seen += q
        self.pending = view
        return view, view

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.seen + query_length, 0

    def get_seq_length(self) -> int:
        return self.seen

    def get_max_length(self) -> int:
        return -1

    def crop(self, tokens_to_remove: int) -> None:
        raise RHeadsError("the budget KV cache cannot be cropped (assisted decoding): use a DynamicCache there")

    def offload(self):
        raise RHeadsError("the budget KV cache does not offload layers")

    def _map(self, fn) -> None:
        for name in ("k", "v", "valid", "kept"):
            ts = getattr(self, name)
            if ts is not None:
                setattr(self, name, [fn(t) for t in ts])

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map(lambda t: t[indices])

    def nbytes(self) -> int:
        """Bytes of the keys and values held now."""
        if self.k is None:
            return 0
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    # ------------------------------------------------------------------------------ selection
    def compress(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, real: torch.Tensor,
                 scaling: float) -> None:
        """Keep each head's positions of the prompt keys/values [B, KV, n, D] (the allotment's row)."""
        B, KV, n, _ = keys.shape
        captured = self.settings.captured
        if captured is not None:  # a shared prefill (`shared.py`): keep what every policy's pick needs, pick nothing
            window = query[:, :, -self.settings.window:].clone()  # a copy: a view would keep every query alive
            captured[self.layer_idx] = (window, keys, values, real, scaling)
            return
        lens = real.sum(dim=1)  # [B] real tokens per row
        if bool((lens == n).all()):  # no padding: one pick for the whole batch
            picks = self._pick(query, keys, real, scaling, self.settings.allotment(n))
        else:  # each row picks from its own real tokens with its own length's allotment (a row alone, unpadded)
            picks = self._rows(query, keys, real, scaling, lens)
        self.k, self.v, self.valid, self.kept = [], [], [], []
        for h, (idx, ok) in enumerate(picks):
            gather = idx[:, :, None].expand(B, idx.shape[1], keys.shape[-1])
            self.k.append(keys[:, h].gather(1, gather))  # [B, c, D]
            self.v.append(values[:, h].gather(1, idx[:, :, None].expand(B, idx.shape[1], values.shape[-1])))
            self.valid.append(ok)
            self.kept.append(torch.where(ok, idx, -1))

    def _rows(self, query: torch.Tensor, keys: torch.Tensor, real: torch.Tensor, scaling: float,
              lens: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per KV head (idx [B, c], ok [B, c]) of a left-padded batch: each row's pick on its real suffix, shifted
        to the padded slots, padded to the longest row's count with entries that are never attended (ok False)."""
        B, KV, n, _ = keys.shape
        m = query.shape[2]
        per_row = []
        for b in range(B):
            nb = int(lens[b])
            if nb < 1 or not bool(real[b, n - nb:].all()):
                raise RHeadsError("the budget KV cache needs left-padded batches (every row's real tokens last): "
                                  "pad on the left, or use --batch-size 1")
            qb = query[b:b + 1, :, max(0, m - nb):]  # the row's own queries among the last m slots
            ones = torch.ones(1, nb, dtype=torch.bool, device=keys.device)
            picks = self._pick(qb, keys[b:b + 1, :, n - nb:], ones, scaling, self.settings.allotment(nb))
            per_row.append([(idx + (n - nb), ok) for idx, ok in picks])
        out = []
        for h in range(KV):
            c = max(r[h][0].shape[1] for r in per_row)
            idx = torch.zeros(B, c, dtype=torch.long, device=keys.device)
            ok = torch.zeros(B, c, dtype=torch.bool, device=keys.device)
            for b, r in enumerate(per_row):
                i, o = r[h]
                idx[b, : i.shape[1]], ok[b, : o.shape[1]] = i[0], o[0]
            out.append((idx, ok))
        return out

    def _pick(self, query: torch.Tensor, keys: torch.Tensor, real: torch.Tensor, scaling: float,
              al: Allotment) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per KV head (idx [B, c], ok [B, c]): the prompt slots it keeps under the allotment `al`, and which of
        them are real tokens."""
        B, KV, n, _ = keys.shape
        modes, counts = al.modes[self.layer_idx], al.counts[self.layer_idx]
        st = self.settings
        scores = None
        if (modes == SNAP).any():
            scores = snap_scores(query, keys, real, st.window, st.kernel, scaling)  # [B, KV, n - w]
        out = []
        ar = torch.arange(n, device=keys.device)
        for h in range(KV):
            c = int(min(counts[h], n))
            if modes[h] == FULL or c >= n:
                idx, ok = ar.expand(B, n), real
            elif modes[h] == SNAP:
                w = min(st.window, n, c)
                prefix = scores[:, h] if w == min(st.window, n) else None
                if prefix is None:  # the window shrinks to the count: its scores are those of a smaller window
                    prefix = snap_scores(query, keys, real, w, st.kernel, scaling)[:, h]
                picked = prefix.topk(c - w, dim=-1)  # [B, c - w]
                idx = torch.cat([picked.indices.sort(dim=-1).values, ar[n - w:].expand(B, w)], dim=1)  # [B, c]
                ok = real.gather(1, idx) & torch.cat(
                    [torch.isfinite(prefix.gather(1, picked.indices.sort(dim=-1).values)),
                     torch.ones(B, w, dtype=torch.bool, device=keys.device)], dim=1)
            else:  # WINDOW: the first sinks, then the last positions
                s = min(st.sink, c)
                r = c - s
                sidx, sok = _sinks(real, s, n - r)  # [B, s]
                idx = torch.cat([sidx, ar[n - r:].expand(B, r)], dim=1)  # [B, c]
                ok = torch.cat([sok, real[:, n - r:]], dim=1)
            out.append((idx, ok))
        return out

    def load(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, real: torch.Tensor,
             scaling: float) -> None:
        """Fill this layer as its own prefill would have from a shared prefill's capture: the prompt's last
        queries [B, H, >= window, D], keys/values [B, KV, n, D], real [B, n]."""
        if self.seen:
            raise RHeadsError("this budget KV cache layer already holds a prompt: load a fresh cache")
        self.lazy_initialization(keys, values)
        self.compress(query, keys, values, real, scaling)
        self.seen = keys.shape[2]


class SelectKV:
    """What a `SelectLayer` returns as keys (and values): this call's slots and the layer; `rheads_attention` is the
    layer's attention (module docstring)."""

    def __init__(self, layer: SelectLayer, k: torch.Tensor, v: torch.Tensor, first: int):
        self.layer, self.k, self.v, self.first = layer, k, v, first  # k, v [B, KV, q, D]

    def rheads_attention(self, module, query: torch.Tensor, value, attention_mask: torch.Tensor | None, ctl,
                         **kwargs) -> tuple[torch.Tensor, None]:
        layer = self.layer
        layer.pending = None
        if ctl is not None and (ctl.recorders or ctl.ablate or ctl.collect):
            raise RHeadsError("recording or ablating heads is not supported with a compressed KV cache: run capture "
                              "and ablation with the full cache (KV policy full)")
        if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
            raise RHeadsError("the budget KV cache does not support attention logit soft-capping or attention sinks "
                              "(s_aux): use the full KV policy for this model")
        B, H, q, D = query.shape  # [B, H, q, D]
        KV = layer.num_kv_heads
        G = H // KV
        scaling = kwargs.get("scaling") or D ** -0.5
        real = real_slots(attention_mask, self.first, q, B, query.device)  # [B, q]
        if layer.k is None:  # the prefill: the full cache's own attention, then each head keeps its positions
            from transformers.integrations.sdpa_attention import sdpa_attention_forward

            out, _ = sdpa_attention_forward(module, query, self.k, self.v, attention_mask, dropout=0.0,
                                            scaling=scaling)  # [B, q, H, Dv]
            layer.compress(query, self.k, self.v, real, scaling)
            return out, None
        out = query.new_empty(B, q, H, self.v.shape[-1])  # [B, 1, H, Dv]
        for h in range(KV):
            keys = torch.cat([layer.k[h], self.k[:, h]], dim=1)  # [B, m + 1, D]
            vals = torch.cat([layer.v[h], self.v[:, h]], dim=1)
            valid = torch.cat([layer.valid[h], real], dim=1)  # [B, m + 1]
            qh = query[:, h * G:(h + 1) * G]  # [B, G, 1, D]
            o = torch.nn.functional.scaled_dot_product_attention(
                qh, keys[:, None].expand(B, G, *keys.shape[1:]), vals[:, None].expand(B, G, *vals.shape[1:]),
                attn_mask=valid[:, None, None, :], scale=scaling)  # [B, G, 1, Dv]
            out[:, :, h * G:(h + 1) * G] = o.transpose(1, 2)
            layer.k[h], layer.v[h], layer.valid[h] = keys, vals, valid
        return out, None


class SelectSettings:
    """What a `SelectCache`'s layers read of it: the policy's allotments (one per prompt width), the sink, SnapKV's
    window and kernel, and a shared prefill's `captured` (None outside `shared.py`). The layers hold this object,
    not their cache, so that a cache and its layers form no reference cycle: a dropped cache frees its prompt's
    keys and values at once, not at Python's next cyclic collection (the 8K sweeps grew to 15 GB that way)."""

    def __init__(self, allot, sink: int, window: int, kernel: int):
        self.allot, self.sink, self.window, self.kernel = allot, int(sink), int(window), int(kernel)
        self.captured: dict[int, tuple] | None = None
        self._allotments: dict[int, Allotment] = {}

    def allotment(self, n: int) -> Allotment:
        """The allotment of an n-slot prompt (asked of the policy once per width)."""
        if n not in self._allotments:
            self._allotments[n] = self.allot(n)
        return self._allotments[n]


class SelectCache(OneCallCache):
    """A `Cache` whose full-attention layers keep, per KV head, the prompt positions of `allot(n)` (module
    docstring). One per `generate` call (or `reset()` between calls)."""

    def __init__(self, config, allot, *, sink: int = 4, window: int = SNAP_WINDOW, kernel: int = SNAP_KERNEL):
        from transformers.cache_utils import get_layer_types_and_kwargs

        text = config.get_text_config(decoder=True)
        KV = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        types, kwargs = get_layer_types_and_kwargs(text)
        self.settings = SelectSettings(allot, sink, window, kernel)
        layers: list[CacheLayerMixin] = []
        for l, (t, kw) in enumerate(zip(types, kwargs)):
            if t == FULL_TYPE:
                layers.append(SelectLayer(self.settings, l, KV))
            elif t in SLIDING_TYPES:
                layers.append(DynamicSlidingWindowLayer(**kw))
            else:
                raise RHeadsError(f"layer {l} of this model is a '{t}' layer: the budget KV cache supports "
                                  "full-attention and sliding-window layers only; use the full KV policy")
        super().__init__(layers=layers)
        self._peak = 0

    sink = property(lambda self: self.settings.sink)
    window = property(lambda self: self.settings.window)
    kernel = property(lambda self: self.settings.kernel)

    @property
    def captured(self) -> dict[int, tuple] | None:
        """A shared prefill's capture (`shared.PrefillCapture`), None for a cache that picks."""
        return self.settings.captured

    @captured.setter
    def captured(self, value: dict[int, tuple] | None) -> None:
        self.settings.captured = value

    def allotment(self, n: int) -> Allotment:
        """The allotment of an n-slot prompt (asked of the policy once per width)."""
        return self.settings.allotment(n)


def select_bytes(config, allotment: Allotment, n: int, new: int, batch: int = 1, dtype_bytes: int = 4) -> int:
    """What a `SelectCache` holds after an n-slot prompt and `new` more slots: per KV head of a full-attention layer
    its count + new; sliding layers min(n + new, window - 1)."""
    KV, D, _, types, kwargs = _dims(config)
    slots = 0
    for l, (t, kw) in enumerate(zip(types, kwargs)):
        if t in SLIDING_TYPES:
            slots += KV * min(n + new, kw["sliding_window"] - 1)
        else:
            slots += int(np.sum(allotment.counts[l])) + KV * new
    return 2 * batch * D * dtype_bytes * slots
