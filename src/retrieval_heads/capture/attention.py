"""The `rheads` attention function: SDPA, plus recorders and head ablation while a controller is active.

It is registered in transformers' attention-function registry (`AttentionInterface`), with SDPA's mask
function registered under the same name (`AttentionMaskInterface`), so any model family whose modeling
code dispatches through the registry (Llama, Qwen2, Mistral, Gemma 3, ...) works unchanged: no forked
modeling files.

Per layer and forward call, while an `AttentionController` is active (`controller.py`):
- a layer with recorders gets the attention of the rows they record: QK in the model's dtype for those rows
  only ([B, KV, G*R, k]: the G query heads of a KV group share one matmul, no repeat_kv copy of the cache),
  scaled, soft-capped and masked as eager attention does, upcast to float32 for the softmax. A decoding step
  (one query row) then finishes attention from those probabilities (cast to the value dtype, times V, as
  eager attention does), so recording costs no second QK; a prefill runs SDPA for its output;
- a layer with neither recorders nor ablation runs transformers' own `sdpa_attention_forward`, untouched;
- ablated query heads are replaced after attention, before `o_proj` (`ablation.py`), in prefill and decoding;
- `collect` sums each head's output, for the `mean` ablation.
Key index i of a layer holds cache slot max(0, seen - k) + i, seen being the tokens cached so far: right for
dynamic caches, sliding-window caches (they keep the tail) and static buffers (they return every slot, the
unfilled ones masked). A cache layer may return its own key object with a `rheads_attention` method (the
KV-cache policies of `kvcache.py`): the attention is then its own.

With no controller active the call is exactly transformers' `sdpa_attention_forward`.

Left out on purpose: attention sinks (`s_aux`, gpt-oss) and models that do not use the registry (they get a
clear error from `check_model`); flash/flex kernels (recording needs the rows of scores).
"""

from __future__ import annotations

import torch

from ..errors import RHeadsError
from .ablation import ABLATION_MODES, _AblationContext
from .controller import AttentionController, active
from .recorders import Rows

ATTN_NAME = "rheads"


def _sdpa(*args, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(*args, **kwargs)


def row_logits(query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None, rows: list[int],
               scaling: float, softcap: float | None) -> torch.Tensor:
    """[B, H, R, k] float32 attention logits of query rows `rows`, masked keys at -inf (eager's arithmetic)."""
    B, H, q_len, D = query.shape
    kv, k_len = key.shape[1], key.shape[2]
    G, R = H // kv, len(rows)
    q = query[:, :, rows[0]:rows[-1] + 1] if rows == list(range(rows[0], rows[-1] + 1)) else query[:, :, rows]
    q = q.reshape(B, kv, G * R, D)  # [B, H, R, D] -> [B, KV, G*R, D] (head h = group h // G, repeat_kv order)
    s = torch.matmul(q, key.transpose(-1, -2)) * scaling  # [B, KV, G*R, k] in the model's dtype
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    s = s.view(B, H, R, k_len).float()  # [B, KV, G*R, k] -> [B, H, R, k]
    idx = torch.tensor(rows, device=query.device)
    if attention_mask is None:  # SDPA's causal shortcut: query row i sees keys up to k_len - q_len + i
        visible = torch.arange(k_len, device=query.device)[None, :] <= (idx + k_len - q_len)[:, None]  # [R, k]
        return s.masked_fill(~visible[None, None], float("-inf"))
    m = attention_mask.index_select(2, idx) if attention_mask.shape[2] > 1 else attention_mask  # [B|1, 1, R, k]
    if m.dtype == torch.bool:
        return s.masked_fill(~m, float("-inf"))
    return s + m.float()


def _record(ctl: AttentionController, layer: int, query, key, attention_mask, kwargs, q_len: int, k_len: int,
            seen: int) -> torch.Tensor | None:
    """Feed this layer's recorders; returns the float32 probabilities [B, H, 1, k] of a decoding step (so the
    caller can finish attention from them), else None."""
    recs = ctl.recorders_for(layer)
    rows = ctl.rows_of(q_len, seen) if recs else None
    if not rows:
        return None
    scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
    logits = row_logits(query, key, attention_mask, rows, scaling, kwargs.get("softcap"))  # [B, H, R, k]
    probs = logits.softmax(-1)  # [B, H, R, k]
    offset = max(0, seen - k_len)
    row_slots = torch.tensor(rows, device=query.device) + (seen - q_len)  # [R]
    for r in recs:
        idx = r.head_index(layer, query.shape[1], query.device)
        lg, pr = (logits, probs) if idx is None else (logits.index_select(1, idx), probs.index_select(1, idx))
        r.record(Rows(layer, lg, pr, offset, row_slots, seen))
    return probs if q_len == 1 else None


def rheads_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # [B, H, q, D]
    key: torch.Tensor,  # [B, KV, k, D]
    value: torch.Tensor,  # [B, KV, k, D]
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    own = getattr(key, "rheads_attention", None)
    if own is not None:  # a KV-cache policy's keys (kvcache.py): per-head lengths, its own attention
        return own(module, query, value, attention_mask, active(), **kwargs)
    ctl = active()
    layer = getattr(module, "layer_idx", None)
    if ctl is None or layer is None:
        return _sdpa(module, query, key, value, attention_mask, **kwargs)
    if kwargs.get("s_aux") is not None:
        raise RHeadsError("models with attention sinks (s_aux) are not supported by retrieval-heads yet")
    q_len, k_len = query.shape[2], key.shape[2]
    seen = ctl.advance(layer, q_len)
    probs = _record(ctl, layer, query, key, attention_mask, kwargs, q_len, k_len, seen)
    if probs is not None:  # a decoding step: finish attention from the recorded row
        B, H, _, D = query.shape
        kv = key.shape[1]
        p = probs.to(value.dtype).view(B, kv, H // kv, k_len)  # [B, H, 1, k] -> [B, KV, G, k]
        out = torch.matmul(p, value).reshape(B, 1, H, D)  # [B, KV, G, D] -> [B, 1, H, D]
        weights = None
    else:
        out, weights = _sdpa(module, query, key, value, attention_mask, **kwargs)  # out [B, q, H, D]
    heads = ctl.ablated(layer, out.device)
    if heads is not None:
        ctx = _AblationContext(heads, query, key, value, attention_mask, ctl.means.get(layer))
        out = out.clone()
        out[:, :, heads] = ABLATION_MODES[ctl.mode].fn(out[:, :, heads], ctx)  # [B, q, h, D]
    if ctl.collect:
        s = out.detach().float().sum(dim=(0, 1))  # [H, D]
        ctl.sums[layer] = ctl.sums.get(layer, 0) + s
        ctl.counts[layer] = ctl.counts.get(layer, 0) + out.shape[0] * out.shape[1]
    return out, weights


def register() -> str:
    """Register the `rheads` attention and mask functions with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, rheads_attention_forward)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
    return ATTN_NAME


def use_rheads(model: torch.nn.Module) -> torch.nn.Module:
    """Switch a loaded model to the `rheads` attention (registering it first)."""
    register()
    model.set_attn_implementation(ATTN_NAME)
    check_model(model)
    return model


def check_model(model: torch.nn.Module) -> None:
    """Fail early, in one line, when the model does not dispatch attention through the registry."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != ATTN_NAME:
        raise RHeadsError(
            f"the model uses attention '{impl}', not '{ATTN_NAME}': load it with retrieval_heads.load_model "
            "or call retrieval_heads.capture.attention.use_rheads(model)"
        )
