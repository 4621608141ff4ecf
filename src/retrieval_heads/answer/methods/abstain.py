"""`abstain`: greedy (or another registered method, `decoder`), then the monitor scores the answer (teacher-forced,
`Monitor.score`); when its answer-level verdict is in `refuse_on`, or its hallucination score is above `max_score`,
the answer is replaced by a fixed refusal and the row is marked abstained. The decoder's passes per token (greedy:
one), plus the one teacher-forced pass of the monitor (its time counts in this method's seconds).

Parameters: `refusal` (str, default "I cannot answer from the context."), `refuse_on` (str, default
"unsupported": a comma list of `monitor.rules.VERDICTS`; empty: no verdict refuses), `max_score` (float, default
1.0: off, the score never exceeds 1), `decoder` (str, default "greedy": the registered method that writes the answer
before the monitor judges it, at that method's default parameters; e.g. `copy` or `gated`, so that better answers
and abstentions add up). The defaults are label-free (the monitor's own verdict on greedy's answer); a `max_score`
and a `decoder` are settings to choose on the tune split (`rheads answer tune`: the best selective accuracy at
coverage >= 0.8).
Left out on purpose: a threshold fitted on the reported items; a decoder's own parameters (a `decoder` runs at its
defaults); `abstain` as its own decoder.
"""

from __future__ import annotations

from ...errors import ParamError
from ..base import AnswerMethod, Choice
from ..registry import register_method

REFUSAL = "I cannot answer from the context."
MIN_COVERAGE = 0.8  # `rheads answer tune` keeps a setting only if it answers at least this share of the items


@register_method("abstain")
class Abstain(AnswerMethod):
    """See the module docstring."""

    help = ("greedy (or `decoder`), but a fixed refusal when the monitor's verdict is unsupported (the decoder's "
            "passes, greedy 1 per token, + the monitor)")
    order = 50
    params = {"refusal": REFUSAL, "refuse_on": "unsupported", "max_score": 1.0, "decoder": "greedy"}

    def __init__(self, **params):
        from ...monitor.rules import VERDICTS

        super().__init__(**params)
        self.refuse_on = {v.strip() for v in self.p["refuse_on"].split(",") if v.strip()}
        bad = sorted(self.refuse_on - set(VERDICTS))
        if bad:
            raise ParamError("params", f"abstain.refuse_on={self.p['refuse_on']}",
                             f"use verdicts among: {', '.join(VERDICTS)}")
        from ..registry import get_method_class, method_names

        decoder = str(self.p["decoder"]).strip()
        others = [n for n in method_names() if n != self.name]
        if decoder not in others:
            raise ParamError("params", f"abstain.decoder={decoder}",
                             f"name another registered method, at its defaults: {', '.join(others)}")
        self.decoder = get_method_class(decoder)()

    @classmethod
    def tune_objective(cls, figures: dict) -> float | None:
        """Selective accuracy, among the settings that keep at least 80% of the answers (the issue's coverage)."""
        cov = figures.get("coverage")
        return figures.get("selective_accuracy") if cov is not None and cov >= MIN_COVERAGE else None

    def start(self, run) -> None:
        self.decoder.start(run)

    def step(self, run) -> Choice:
        return self.decoder.step(run)

    def finish(self, run, answer: str) -> tuple[str, bool]:
        answer, abstained = self.decoder.finish(run, answer)
        if abstained:
            return answer, True
        if run.tokens:
            rep = run.score(run.tokens)
            if rep.verdict in self.refuse_on or rep.hallucination_score > self.p["max_score"]:
                return self.p["refusal"], True
        return answer, False
