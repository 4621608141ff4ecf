"""Reference means for the `mean` ablation mode: each head's mean output over plain haystack windows.

Left out on purpose: means over task prompts (`evaluate.py` takes them from its own first prompts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..probes.haystack import get_haystack
from ..capture.controller import collect_means


@dataclass
class MeanReference:
    """Per-layer [H, D] mean head outputs for mode `mean`, and how they were obtained."""

    means: dict[int, torch.Tensor]
    info: dict[str, Any]


def mean_reference_info(tokenizer, haystack: str, n_prompts: int, length: int,
                        max_ctx: int) -> tuple[list[list[int]], dict[str, Any]]:
    """Token windows of the plain haystack (no template, no needle) for the reference means, and their record."""
    length = min(length, max_ctx or length)
    n = max(1, n_prompts)
    ids = tokenizer(get_haystack(haystack), add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    body = length - len(bos)
    while len(ids) < body * 2:
        ids = ids + ids
    span = len(ids) - body
    starts = [i * span // max(1, n - 1) if n > 1 else 0 for i in range(n)]
    windows = [bos + ids[s : s + body] for s in starts]
    info = {"source": "collect_means over plain haystack windows (no template, no needle)",
            "haystack": haystack, "n_prompts": n, "length": length, "token_starts": starts}
    return windows, info


def mean_reference(model, windows: list[list[int]], info: dict[str, Any]) -> MeanReference:
    """Reference means over the windows of `mean_reference_info`."""
    means = collect_means(model, [torch.tensor([w]) for w in windows])  # layer -> [H, D]
    return MeanReference(means, info)
