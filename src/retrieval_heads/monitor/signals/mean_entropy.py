"""`mean_entropy`, a logit baseline: the mean entropy of the next-token distributions that emitted the answer
(higher = less certain); per token, the entropy of its step.

Left out on purpose: entropies over a subset of the vocabulary.
"""

from __future__ import annotations

import numpy as np

from .base import AnswerTrace, Signal, register_signal


@register_signal
class MeanEntropy(Signal):
    name = "mean_entropy"
    stat = "mean_entropy"
    order = 13

    def value(self, a: AnswerTrace, qualifier: str | None = None) -> float | None:
        return float(np.mean(a.entropies)) if len(a.entropies) else None

    def token_values(self, a: AnswerTrace, qualifier: str | None = None) -> list[float]:
        return list(a.entropies)
