"""The `retrieval` policy: a KV head keeps every position when any query head of its group is a retrieval head
(score above `threshold`, or among the `top` best query heads when top > 0); the rest keep sink + recent.
At a budget (`KVConfig.budget`): the KV heads ranked by their group's best score keep every position, as many as
the budget allows after the sinks and recent windows of the rest (`budget.full_then`), through the budget cache.

The scores are a HeadScores, a path to scores.json (or its run dir), or an [L, H] array; a file is read once per
policy object (the first `full_kv_heads` call), not on every call.

Left out on purpose: per-query-head selection (a KV head is full for all of its group or for none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ParamError, RHeadsError
from ...heads.masks import check_dims, kv_mask
from ...heads.scores import HeadScores
from ..dims import kv_dims
from ..policy import KVPolicy
from ..registry import register_policy


def check_top(top: int) -> None:
    if top < 0:
        raise ParamError("kv.top", top, "use a number of query heads >= 1, or 0 to use {kv.threshold}")


@register_policy("retrieval")
class RetrievalPolicy(KVPolicy):
    """A KV head stays full when a query head of its group is a retrieval head."""

    help = "KV heads that hold a retrieval head keep every token, the others sink + recent (at --kv-budget: as many " \
           "top-ranked KV heads as fit)"
    order = 10
    needs_scores = True
    uses_budget = "optional"

    def __init__(self, scores, threshold: float = 0.1, top: int = 0):
        check_top(top)
        self.scores, self.threshold, self.top = scores, float(threshold), int(top)
        self._matrix: np.ndarray | None = None  # [L, H] mean scores, read once
        self._source: HeadScores | None = None  # what they were read from, when a score file

    @classmethod
    def from_config(cls, kv, scores=None) -> "RetrievalPolicy":
        return cls(scores, kv.threshold, kv.top)

    @classmethod
    def check_config(cls, kv, scores=None) -> None:
        super().check_config(kv, scores)
        check_top(kv.top)

    def params(self) -> dict:
        return {"threshold": self.threshold, "top": self.top}

    def score_matrix(self, model) -> np.ndarray:
        """[L, H] mean retrieval scores (the file read on the first call only); one line when they were made for
        a model of another shape."""
        L, H, _ = kv_dims(model)
        if self._matrix is None:
            scores = self.scores
            if scores is None:
                raise ParamError("scores", None, "this KV policy needs retrieval scores: a scores.json from "
                                 "`rheads detect` on this model")
            if isinstance(scores, (str, Path)):
                scores = HeadScores.load(scores)
            if isinstance(scores, HeadScores):
                self._source, self._matrix = scores, scores.mean()
            else:
                self._matrix = np.asarray(scores, dtype=float)
        if self._source is not None:
            check_dims(self._source, L, H)
        elif self._matrix.shape != (L, H):
            raise RHeadsError(f"the scores have shape {self._matrix.shape} but the model has {L} layers x {H} heads: "
                              "use scores detected on this model")
        return self._matrix

    def retrieval_query_heads(self, model) -> np.ndarray:
        """[L, H] bool: the retrieval heads (above the threshold, or the top K)."""
        m = self.score_matrix(model)
        if self.top:
            order = sorted(np.ndindex(*m.shape), key=lambda lh: (-m[lh], lh))[:self.top]  # ties by layer, head
            mask = np.zeros(m.shape, dtype=bool)
            for lh in order:
                mask[lh] = True
            return mask
        return m > self.threshold

    def retrieval_kv_heads(self, model) -> np.ndarray:
        """[L, KV] the KV heads that hold a retrieval head."""
        _, _, KV = kv_dims(model)
        return kv_mask(self.retrieval_query_heads(model), KV)

    def full_kv_heads(self, model) -> np.ndarray:
        if self.budget is not None:
            return super().full_kv_heads(model)
        return self.retrieval_kv_heads(model)

    def kv_head_scores(self, model) -> np.ndarray:
        """[L, KV] each KV head's best query-head score in its group."""
        m = self.score_matrix(model)
        _, H, KV = kv_dims(model)
        return m.reshape(m.shape[0], KV, H // KV).max(axis=2)  # [L, H] -> [L, KV, G] -> [L, KV]

    def ranked_kv_heads(self, model) -> list[tuple[int, int]]:
        """Every (layer, KV head), best group score first (ties by layer, head)."""
        s = self.kv_head_scores(model)
        return sorted(np.ndindex(*s.shape), key=lambda lh: (-s[lh], lh))

    def allot(self, model, n: int):
        from ..budget import WINDOW, full_then
        from ..dims import full_attention_layers

        _, _, KV = kv_dims(model)
        return full_then(n, self.budget, full_attention_layers(model), KV, self.ranked_kv_heads(model), WINDOW,
                         window=0, sink=self.sink, recent=self.recent)
