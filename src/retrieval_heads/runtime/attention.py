"""The `rheads` attention function: SDPA plus per-head top-1 capture and head ablation.

It is registered in transformers' attention-function registry (`AttentionInterface`), with SDPA's mask
function registered under the same name (`AttentionMaskInterface`), so any model family whose modeling
code dispatches through the registry (Llama, Qwen2, Mistral, Gemma 3, ...) works unchanged: no forked
modeling files.

What it does, while an `AttentionController` is active (a context manager):
- capture: for every query head, the cache position of its top-1 attention weight, for the last query
  row of every forward call (the prefill's last row, then each decoding step). Only a [B, H, 1, k] row
  of scores is ever built, so memory grows linearly with context length. The prefill runs SDPA; a
  decoding step finishes attention from that same row (softmax, then V), so capture costs no second QK.
- ablation: the chosen query heads are replaced after attention, before `o_proj`, by one of the modes in
  `ABLATION_MODES` (see there). Ablation applies in prefill and in decoding.
- means: accumulates each head's mean output over a reference run, for the `mean` ablation mode.

With no controller active, or one that neither captures nor ablates a layer, the call is exactly
transformers' own `sdpa_attention_forward`.

Left out on purpose: attention sinks (`s_aux`, gpt-oss) and models that do not use the registry (they
get a clear error from `check_model`); flash/flex kernels (capture needs the scores row).
"""

from __future__ import annotations

import torch

from ..errors import RHeadsError
from .ablation import ABLATION_MODES, _AblationContext
from .controller import active

ATTN_NAME = "rheads"


def _sdpa(*args, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(*args, **kwargs)


def _last_row_scores(query, key, attention_mask, scaling, softcap) -> torch.Tensor:
    """[B, KV, G, k] float32 attention logits of the last query row, masked keys at -inf.

    The G query heads of a KV group share one matmul with their K (no repeat_kv copy of the cache).
    """
    B, H, _, D = query.shape
    kv_heads = key.shape[1]
    q = query[:, :, -1, :].float().reshape(B, kv_heads, H // kv_heads, D)  # [B, KV, G, D]
    scores = torch.matmul(q, key.float().transpose(-1, -2)) * scaling  # [B, KV, G, D] @ [B, KV, D, k] -> [B, KV, G, k]
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        m = attention_mask[:, :, -1, :][:, :, None, :]  # [B|1, 1, 1, k]
        if m.dtype == torch.bool:
            scores = scores.masked_fill(~m, float("-inf"))
        else:
            scores = scores + m.float()
    # no mask: the last row sees every key (causal), so nothing to hide
    return scores


def rheads_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # [B, H, q, D]
    key: torch.Tensor,  # [B, KV, k, D]
    value: torch.Tensor,  # [B, KV, k, D]
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    ctl = active()
    layer = getattr(module, "layer_idx", None)
    if ctl is None or layer is None:
        return _sdpa(module, query, key, value, attention_mask, **kwargs)
    if kwargs.get("s_aux") is not None:
        raise RHeadsError("models with attention sinks (s_aux) are not supported by retrieval-heads yet")
    q_len, k_len = query.shape[2], key.shape[2]
    seen = ctl._seen.get(layer, 0)
    ctl._seen[layer] = seen + q_len
    if ctl.capture:
        B, H, _, D = query.shape
        scaling = kwargs.get("scaling") or D**-0.5
        scores = _last_row_scores(query, key, attention_mask, scaling, kwargs.get("softcap"))  # [B, KV, G, k]
        offset = seen + q_len - k_len  # cache position of key 0 (sliding-window caches keep the tail only)
        ctl.top1.setdefault(layer, []).append((scores.argmax(-1).view(B, H) + offset).to(torch.int32))
    if ctl.capture and q_len == 1:  # a decoding step: finish attention from the scores already computed
        probs = scores.softmax(-1).to(value.dtype)  # [B, KV, G, k]
        out = torch.matmul(probs, value).reshape(B, 1, H, D)  # [B, KV, G, D] -> [B, 1, H, D]
        weights = None
    else:
        out, weights = _sdpa(module, query, key, value, attention_mask, **kwargs)  # out [B, q, H, D]
    heads = ctl._heads(layer, out.device)
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
            "or call retrieval_heads.attention.use_rheads(model)"
        )
