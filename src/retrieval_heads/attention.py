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

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from .errors import RHeadsError

ATTN_NAME = "rheads"

_ACTIVE: contextvars.ContextVar["AttentionController | None"] = contextvars.ContextVar("rheads_ctl", default=None)


# ----------------------------------------------------------------------------------------------------
# ablation modes (a registry: users add their own with `register_ablation_mode`)


@dataclass(frozen=True)
class AblationMode:
    """How a masked head's output is replaced.

    `fn(out, ctx)` gets the head-selected output `out` [B, q, h, D] and returns its replacement.
    """

    name: str
    doc: str
    fn: Callable[[torch.Tensor, "_AblationContext"], torch.Tensor]


@dataclass
class _AblationContext:
    heads: torch.Tensor  # [h] query-head indices being ablated
    query: torch.Tensor  # [B, H, q, D]
    key: torch.Tensor  # [B, KV, k, D]
    value: torch.Tensor  # [B, KV, k, D]
    attention_mask: torch.Tensor | None  # bool [B|1, 1, q, k] (True = may attend) or None = causal
    mean: torch.Tensor | None  # [H, D] reference mean of each head's output, for mode `mean`


def _zero(out: torch.Tensor, ctx: _AblationContext) -> torch.Tensor:
    return torch.zeros_like(out)


def _visible_mask(ctx: _AblationContext, q_start: int, q_end: int) -> torch.Tensor:
    """Bool [B|1, 1, q, k]: which keys each query may see (causal when the model passed no mask)."""
    q_len, k_len = ctx.query.shape[2], ctx.key.shape[2]
    if ctx.attention_mask is not None:
        mask = ctx.attention_mask[:, :, q_start:q_end, :]
        if mask.dtype != torch.bool:  # additive float mask
            mask = mask > torch.finfo(mask.dtype).min / 2
        return mask
    q_pos = torch.arange(q_start, q_end, device=ctx.key.device) + (k_len - q_len)  # [q] key index of each query
    return (torch.arange(k_len, device=ctx.key.device)[None, :] <= q_pos[:, None])[None, None]  # [1, 1, q, k]


def _uniform(out: torch.Tensor, ctx: _AblationContext, chunk: int = 512) -> torch.Tensor:
    B, H, q_len, D = ctx.query.shape
    kv_heads = ctx.key.shape[1]
    v = ctx.value[:, ctx.heads // (H // kv_heads)]  # [B, h, k, D] the KV head of each ablated query head
    pieces = []
    for s in range(0, q_len, chunk):  # chunks of queries keep memory at [chunk, k]
        w = _visible_mask(ctx, s, min(s + chunk, q_len)).to(v.dtype)  # [B|1, 1, c, k]
        w = w / w.sum(-1, keepdim=True).clamp_min(1)
        pieces.append(torch.matmul(w, v))  # [B, h, c, D]
    return torch.cat(pieces, dim=2).transpose(1, 2).to(out.dtype)  # [B, q, h, D]


def _mean(out: torch.Tensor, ctx: _AblationContext) -> torch.Tensor:
    if ctx.mean is None:
        raise RHeadsError("ablation mode 'mean' needs reference means: run `collect_means(...)` first")
    return ctx.mean[ctx.heads].to(out.dtype).expand_as(out)  # [h, D] -> [B, q, h, D]


ABLATION_MODES: dict[str, AblationMode] = {}


def register_ablation_mode(name: str, fn: Callable, doc: str) -> None:
    ABLATION_MODES[name] = AblationMode(name, doc, fn)


register_ablation_mode("zero", _zero, "the head's output is zeroed before the output projection")
register_ablation_mode(
    "uniform",
    _uniform,
    "the head attends uniformly over the positions it may see (its causal/sliding mask): output = mean of its V",
)
register_ablation_mode(
    "mean", _mean, "the head's output is replaced by its mean over a reference run (see `collect_means`)"
)


# ----------------------------------------------------------------------------------------------------
# the controller


@dataclass
class AttentionController:
    """What the `rheads` attention does while active. Use as `with ctl.activate(): model.generate(...)`.

    capture: record top-1 cache positions of the last query row of every forward call.
    ablate: {layer: [query heads]} to replace with `mode`.
    means: {layer: [H, D]} reference means for mode `mean`.
    collect: accumulate per-head output sums into `sums`/`counts` (for `mean`).
    """

    capture: bool = False
    ablate: dict[int, list[int]] = field(default_factory=dict)
    mode: str = "zero"
    means: dict[int, torch.Tensor] = field(default_factory=dict)
    collect: bool = False
    top1: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # layer -> per call [B, H]
    sums: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [H, D]
    counts: dict[int, int] = field(default_factory=dict)
    _seen: dict[int, int] = field(default_factory=dict)  # layer -> tokens processed so far
    _ablate_idx: dict[int, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ABLATION_MODES:
            raise RHeadsError(f"unknown ablation mode '{self.mode}': use one of {', '.join(ABLATION_MODES)}")
        self.ablate = {int(l): sorted(set(int(h) for h in hs)) for l, hs in self.ablate.items() if hs}

    @contextmanager
    def activate(self) -> Iterator["AttentionController"]:
        """Reset the per-generation state and route the `rheads` attention through this controller."""
        self.top1, self._seen = {}, {}
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def top1_positions(self) -> torch.Tensor:
        """[steps, L, B, H] cache positions of each head's top-1, step 0 = last prefill row."""
        layers = sorted(self.top1)
        return torch.stack([torch.stack(self.top1[l]) for l in layers], dim=1).cpu()  # [steps, L, B, H]

    def _heads(self, layer: int, device: torch.device) -> torch.Tensor | None:
        if layer not in self.ablate:
            return None
        idx = self._ablate_idx.get(layer)
        if idx is None or idx.device != device:
            idx = self._ablate_idx[layer] = torch.tensor(self.ablate[layer], device=device)
        return idx


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
    ctl = _ACTIVE.get()
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


def collect_means(model: torch.nn.Module, batches: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    """Each head's mean output [H, D] per layer over the given input_ids batches (the `mean` reference)."""
    ctl = AttentionController(collect=True)
    with ctl.activate(), torch.no_grad():
        for ids in batches:
            model(input_ids=ids.to(model.device), use_cache=False)
    return {l: (s / ctl.counts[l]) for l, s in ctl.sums.items()}
