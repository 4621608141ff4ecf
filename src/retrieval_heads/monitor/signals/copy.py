"""`copy`, a variant of the monitor's score: 1 - max(copy_t, copy_q_t) per token (the weighted share of the
set's heads that copied the token from the context or the question), averaged over the counted tokens.

Left out on purpose: the attention mass (that is `mass`; both together are `combined`).
"""

from __future__ import annotations

from .base import AnswerTrace, Signal, counted_mean, register_signal


@register_signal
class Copy(Signal):
    name = "copy"
    per_head_set = True
    order = 1

    def token_values(self, a: AnswerTrace, qualifier: str | None = None) -> list[float]:
        s = a.sets[qualifier]
        return [1.0 - max(c, q) for c, q in zip(s.copy, s.copy_q)]

    def value(self, a: AnswerTrace, qualifier: str | None = None) -> float | None:
        return counted_mean(self.token_values(a, qualifier), a.content, a.sets[qualifier])
