"""Ablation modes: how a masked head's output is replaced, before `o_proj` (a registry).

- `zero`: the head's output is zeroed;
- `uniform`: the head attends uniformly over the positions its mask lets it see (causal, sliding window,
  padding): its output is the mean of those values, the paper's choice;
- `mean`: the head's output is replaced by its mean over a reference run (`collect_means`).
`register_ablation_mode(name, fn, doc)` adds one; `fn(out, ctx)` gets the head-selected output and returns
its replacement.

Left out on purpose: masking inside the softmax (per-key masks) and partial or weighted ablation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import RHeadsError
from .modes import BUILTIN_ABLATION_DOCS


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


for _name, _fn in (("zero", _zero), ("uniform", _uniform), ("mean", _mean)):
    register_ablation_mode(_name, _fn, BUILTIN_ABLATION_DOCS[_name])
del _name, _fn
