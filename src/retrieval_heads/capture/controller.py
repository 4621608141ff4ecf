"""The attention controller: what the `rheads` attention does while it is active (a context manager).

`AttentionController(recorders=[...], ablate={layer: [heads]}, mode=...)`:
- `recorders` (see `recorders.py`) record reductions of attention rows in their layers; `capture=True` is
  shorthand for a `Top1` recorder over every head, read back with `top1_positions()`;
- `rows`: which query rows they see. None: the last row of every forward call (the prefill's last row, then
  each decoding step: one row per generated token). (a, b): the cache slots a..b-1, in whichever forward call
  holds them (teacher forcing: the rows that predict a given answer);
- `ablate`, `mode`, `means`: heads whose output is replaced (`ablation.py`);
- `collect`: accumulate each head's output sum, for the `mean` ablation (`collect_means`);
- `cached`: tokens already in the cache when the controller's first call comes (a prompt prefilled earlier, under
  another controller with the same `ablate`): cache slots and key positions count from there.

`activate(model)` refuses a compiled model (the controller's Python side effects would not run per step) and
resets the per-generation state; every forward call then advances each layer's count of cached tokens.

Left out on purpose: the attention arithmetic (`attention.py`) and decoding loops (`decoding.py`).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

from ..errors import RHeadsError
from .ablation import ABLATION_MODES
from .recorders import Recorder, Top1

_ACTIVE: contextvars.ContextVar["AttentionController | None"] = contextvars.ContextVar("rheads_ctl", default=None)


def active() -> "AttentionController | None":
    return _ACTIVE.get()


def is_compiled(model) -> bool:
    """A torch.compile'd module, or one whose forward was compiled."""
    return hasattr(model, "_orig_mod") or hasattr(getattr(model, "forward", None), "_torchdynamo_orig_callable")


@dataclass
class AttentionController:
    """See the module docstring. Use as `with ctl.activate(model): model.generate(...)`."""

    capture: bool = False
    recorders: list[Recorder] = field(default_factory=list)
    rows: tuple[int, int] | None = None
    ablate: dict[int, list[int]] = field(default_factory=dict)
    mode: str = "zero"
    means: dict[int, torch.Tensor] = field(default_factory=dict)
    collect: bool = False
    sums: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [H, D]
    counts: dict[int, int] = field(default_factory=dict)
    cached: int = 0
    _seen: dict[int, int] = field(default_factory=dict)  # layer -> tokens in its cache
    _ablate_idx: dict[tuple[int, torch.device], torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ABLATION_MODES:
            raise RHeadsError(f"unknown ablation mode '{self.mode}': use one of {', '.join(ABLATION_MODES)}")
        self.ablate = {int(l): sorted(set(int(h) for h in hs)) for l, hs in self.ablate.items() if hs}
        self._top1 = Top1() if self.capture else None
        if self._top1 is not None:
            self.recorders = [self._top1, *self.recorders]

    @contextmanager
    def activate(self, model=None) -> Iterator["AttentionController"]:
        """Reset the per-generation state and route the `rheads` attention through this controller."""
        if model is not None and is_compiled(model):
            raise RHeadsError("the model is compiled (torch.compile): capture and ablation run Python code at every "
                              "step; pass the uncompiled model")
        self._seen = {}
        for r in self.recorders:
            r.reset()
        with self.resume():
            yield self

    @contextmanager
    def resume(self) -> Iterator["AttentionController"]:
        """Route the `rheads` attention through this controller for more calls, keeping its state (its cache
        counts and recorders): a decoding loop that makes its own forward calls (`answer/passes.py`)."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    # ------------------------------------------------------------------------------ used by the attention

    def advance(self, layer: int, q_len: int) -> int:
        """Count a forward call's q_len new tokens in `layer`; returns the tokens cached after it."""
        seen = self._seen.get(layer, self.cached) + q_len
        self._seen[layer] = seen
        return seen

    def recorders_for(self, layer: int) -> list[Recorder]:
        return [r for r in self.recorders if r.wants(layer)]

    def rows_of(self, q_len: int, seen: int) -> list[int] | None:
        """Query indices (within this call) the recorders see, or None for none."""
        if self.rows is None:
            return [q_len - 1]
        first = seen - q_len  # cache slot of query row 0
        rows = [i for i in range(q_len) if self.rows[0] <= first + i < self.rows[1]]
        return rows or None

    def ablated(self, layer: int, device: torch.device) -> torch.Tensor | None:
        if layer not in self.ablate:
            return None
        key = (layer, device)
        if key not in self._ablate_idx:
            self._ablate_idx[key] = torch.tensor(self.ablate[layer], device=device)
        return self._ablate_idx[key]

    # ------------------------------------------------------------------------------ results

    def top1_positions(self) -> torch.Tensor:
        """[steps, L, B, H] cache slots of each head's top-1, step 0 = last prefill row (capture=True)."""
        if self._top1 is None:
            raise RuntimeError("top1_positions() needs AttentionController(capture=True)")
        per_layer = self._top1.result()  # layer -> [B, T, H] on the CPU
        return torch.stack([t.transpose(0, 1) for _, t in sorted(per_layer.items())], dim=1)  # [T, L, B, H]


def collect_means(model: torch.nn.Module, batches: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    """Each head's mean output [H, D] per layer over the given input_ids batches (the `mean` reference)."""
    ctl = AttentionController(collect=True)
    device = model.get_input_embeddings().weight.device
    with ctl.activate(model), torch.no_grad():
        for ids in batches:
            model(input_ids=ids.to(device), use_cache=False)
    return {l: (s / ctl.counts[l]) for l, s in ctl.sums.items()}
