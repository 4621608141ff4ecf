"""`mass`, a variant of the monitor's score: 1 - mass_t per token (the set's weighted mean attention mass on the
context), averaged over the counted tokens.

Left out on purpose: copying (that is `copy`; both together are `combined`).
"""

from __future__ import annotations

from .base import AnswerTrace, Signal, counted_mean, register_signal


@register_signal
class Mass(Signal):
    name = "mass"
    per_head_set = True
    order = 2

    def token_values(self, a: AnswerTrace, qualifier: str | None = None) -> list[float]:
        return [1.0 - x for x in a.sets[qualifier].mass]

    def value(self, a: AnswerTrace, qualifier: str | None = None) -> float | None:
        return counted_mean(self.token_values(a, qualifier), a.content, a.sets[qualifier])
