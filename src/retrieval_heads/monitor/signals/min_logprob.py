"""`min_logprob`, a logit baseline: the lowest log-probability among the emitted tokens (higher = more
trustworthy); per token, its log-probability.

Left out on purpose: other quantiles.
"""

from __future__ import annotations

import numpy as np

from .base import AnswerTrace, Signal, register_signal


@register_signal
class MinLogprob(Signal):
    name = "min_logprob"
    higher_is_hallucinated = False
    stat = "min_logprob"
    order = 11

    def value(self, a: AnswerTrace, qualifier: str | None = None) -> float | None:
        return float(np.min(a.logprobs)) if len(a.logprobs) else None

    def token_values(self, a: AnswerTrace, qualifier: str | None = None) -> list[float]:
        return list(a.logprobs)
