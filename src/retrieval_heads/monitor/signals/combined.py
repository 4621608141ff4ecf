"""`combined`, the monitor's score (`retrieval:combined` on the retrieval heads weighted by their score).

Per answer token t, for a head set: support_t = (max(copy_t, copy_q_t) + mass_t) / 2 (equal weights: without
labels neither signal is preferred); token_score_t = 1 - support_t, in [0, 1], higher = less supported by what
the user gave. The answer's score is the mean token score over the counted tokens (`rules.counted`).

Left out on purpose: calibration to probabilities (that would need labels).
"""

from __future__ import annotations

from .base import AnswerTrace, Signal, counted_mean, register_signal


def token_score(copy: float, copy_q: float, mass: float) -> float:
    return 1.0 - 0.5 * (max(copy, copy_q) + mass)


@register_signal
class Combined(Signal):
    name = "combined"
    per_head_set = True
    order = 0

    def token_values(self, a: AnswerTrace, qualifier: str | None = None) -> list[float]:
        s = a.sets[qualifier]
        return [token_score(*x) for x in zip(s.copy, s.copy_q, s.mass)]

    def value(self, a: AnswerTrace, qualifier: str | None = None) -> float | None:
        return counted_mean(self.token_values(a, qualifier), a.content, a.sets[qualifier])
