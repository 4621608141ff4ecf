"""The attention controller: what the `rheads` attention does while it is active (a context manager).

Left out on purpose: the attention arithmetic itself (`attention.py`) and decoding loops (`decoding.py`).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

from ..errors import RHeadsError
from .ablation import ABLATION_MODES

_ACTIVE: contextvars.ContextVar["AttentionController | None"] = contextvars.ContextVar("rheads_ctl", default=None)


def active() -> "AttentionController | None":
    return _ACTIVE.get()


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


def collect_means(model: torch.nn.Module, batches: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    """Each head's mean output [H, D] per layer over the given input_ids batches (the `mean` reference)."""
    ctl = AttentionController(collect=True)
    with ctl.activate(), torch.no_grad():
        for ids in batches:
            model(input_ids=ids.to(model.device), use_cache=False)
    return {l: (s / ctl.counts[l]) for l, s in ctl.sums.items()}
