"""`length`, a baseline: the answer's length in tokens (stored as `n_tokens`; higher = longer answers, which
ramble more often).

Left out on purpose: a token level (a length has none).
"""

from __future__ import annotations

from .base import AnswerTrace, Signal, register_signal


@register_signal
class Length(Signal):
    name = "length"
    stat = "n_tokens"
    order = 14

    def value(self, a: AnswerTrace, qualifier: str | None = None) -> float | None:
        return len(a.logprobs)
