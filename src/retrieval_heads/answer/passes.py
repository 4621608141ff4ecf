"""A forward pass of one answering method: its own input, cache and attention controller, computed lazily.

`Pass(model, input_ids, ablate=..., recorders=...)` holds a fresh cache (`capture.decoding.new_cache`) and a
controller that stays the same for the whole answer (so its recorders' cache slots keep counting). `feed(token)`
queues a token; `logits()` runs one forward call over everything queued (the prompt at first, then one token per
step, or several when the pass was not read for some steps) and returns the last position's logits [V] (float32).
Recorders see the last row of every call, i.e. the row that predicts the next token; `last(recorder)` reads it.
`prefix=(cache, m)`: a cache already holding `input_ids[:m]` (computed with the same `ablate`, `loop.Answerer.prefix`),
which the pass takes over; only the rest is queued, and the controller counts slots from m.

Left out on purpose: batches (one prompt), and compiled models (the controller's Python code must run per call).
"""

from __future__ import annotations

import torch

from ..capture.controller import AttentionController, is_compiled
from ..capture.decoding import new_cache
from ..errors import RHeadsError


class Pass:
    """See the module docstring."""

    def __init__(self, model, input_ids: list[int], *, ablate: dict[int, list[int]] | None = None,
                 recorders: list | tuple = (), prefix: tuple[object, int] | None = None):
        if is_compiled(model):
            raise RHeadsError("the model is compiled (torch.compile): answering methods run Python code at every "
                              "step; pass the uncompiled model")
        self.model = model
        cache, m = prefix if prefix is not None else (new_cache(model), 0)
        if not 0 <= m < len(input_ids):
            raise RHeadsError(f"a pass's prefix of {m} tokens must be shorter than its {len(input_ids)} input ids")
        self.ctl = AttentionController(recorders=list(recorders), ablate=dict(ablate or {}), cached=m)
        self.cache = cache
        self.pending = [int(t) for t in input_ids[m:]]
        self.calls = 0  # forward calls made
        self.tokens = 0  # tokens processed
        self._logits: torch.Tensor | None = None
        self.device = model.get_input_embeddings().weight.device

    def feed(self, token: int) -> None:
        self.pending.append(int(token))
        self._logits = None

    def logits(self) -> torch.Tensor:
        """[V] float32 logits of the next token after everything fed so far."""
        if self._logits is None:
            ids = torch.tensor([self.pending], device=self.device)  # [1, q]
            with self.ctl.resume(), torch.no_grad():
                out = self.model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=1)
            self._logits = out.logits[0, -1].float()  # [1, 1, V] -> [V]
            self.calls += 1
            self.tokens += len(self.pending)
            self.pending = []
        return self._logits

    def last(self, recorder) -> dict[int, torch.Tensor]:
        """{layer: [h, ...]} of the recorder's last recorded row (batch row 0), on the CPU."""
        self.logits()
        return {l: ts[-1][0, -1].cpu() for l, ts in sorted(recorder.data.items())}
