"""`mean_logprob`, a logit baseline: the mean log-probability of the emitted tokens (higher = more trustworthy);
per token, its log-probability.

Left out on purpose: length normalisation beyond the mean.
"""

from __future__ import annotations

import numpy as np

from .base import AnswerTrace, Signal, register_signal


@register_signal
class MeanLogprob(Signal):
    name = "mean_logprob"
    higher_is_hallucinated = False
    stat = "mean_logprob"
    order = 10

    def value(self, a: AnswerTrace, qualifier: str | None = None) -> float | None:
        return float(np.mean(a.logprobs)) if len(a.logprobs) else None

    def token_values(self, a: AnswerTrace, qualifier: str | None = None) -> list[float]:
        return list(a.logprobs)
