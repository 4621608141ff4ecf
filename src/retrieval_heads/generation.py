"""What every probe run shares: the sample grid, the model's shape, and greedy decoding under a controller.

Left out on purpose: sampling and batching (scores and NIAH cells are defined on greedy output of one prompt).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from .attention import AttentionController
from .config import ProbeConfig
from .errors import RHeadsError


@dataclass(frozen=True)
class Sample:
    id: str
    length: int
    depth: float
    needle_index: int


def grid(probe: ProbeConfig, n_needles: int) -> list[Sample]:
    """lengths x depths x needles_per_cell in a fixed order; needles assigned from a seeded shuffle."""
    order = list(range(n_needles))
    random.Random(probe.seed).shuffle(order)
    samples, c = [], 0
    for length in probe.lengths:
        for depth in probe.depths:
            for k in range(probe.needles_per_cell):
                idx = order[(c * probe.needles_per_cell + k) % n_needles]
                samples.append(Sample(f"L{length}-D{depth:g}-N{idx}", int(length), float(depth), idx))
            c += 1
    return samples


def model_dims(model) -> tuple[int, int, int]:
    """(layers, query heads, max context or 0)."""
    cfg = model.config.get_text_config()
    return cfg.num_hidden_layers, cfg.num_attention_heads, getattr(cfg, "max_position_embeddings", 0) or 0


def check_grid(probe: ProbeConfig, max_new_tokens: int, max_ctx: int) -> None:
    """One-line errors for an empty grid or lengths the model's context cannot hold."""
    if not probe.lengths or not probe.depths or probe.needles_per_cell < 1:
        raise RHeadsError("the grid is empty: give at least one length, one depth and needles_per_cell >= 1")
    if max_ctx and max(probe.lengths) + max_new_tokens > max_ctx:
        raise RHeadsError(
            f"length {max(probe.lengths)} + {max_new_tokens} new tokens exceeds the model's context of "
            f"{max_ctx} tokens: use --lengths up to {max_ctx - max_new_tokens}"
        )


def model_meta(model) -> dict[str, Any]:
    """The model's shape, for result files."""
    cfg = model.config.get_text_config()
    return {
        "family": cfg.model_type,
        "num_layers": cfg.num_hidden_layers,
        "num_heads": cfg.num_attention_heads,
        "num_kv_heads": getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
        "max_context": getattr(cfg, "max_position_embeddings", None),
        "sliding_window": getattr(cfg, "sliding_window", None),
        "layer_types": getattr(cfg, "layer_types", None),
        "name_or_path": getattr(model, "name_or_path", None),
        "dtype": str(next(model.parameters()).dtype),
    }


def eos_ids(model, tokenizer) -> list[int]:
    """The model's EOS ids plus the usual end-of-turn tokens the tokenizer knows."""
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    vocab = tokenizer.get_vocab()
    for tok in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>"):
        if tok in vocab and vocab[tok] not in ids:
            ids.append(vocab[tok])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def greedy(model, input_ids: list[int], max_new_tokens: int, eos: list[int] | None,
           ctl: AttentionController) -> torch.Tensor:
    """Greedy-decode one prompt with `ctl` active (prefill and every step). Returns generated ids [T]."""
    ids = torch.tensor([input_ids], device=model.device)  # [1, N]
    with ctl.activate(), torch.no_grad():
        seq = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, temperature=None, top_p=None, top_k=None,
                             eos_token_id=eos, pad_token_id=(eos or [0])[0])
    return seq[0, ids.shape[1]:].cpu()  # [T]
