"""`cad`: context-aware decoding (Shi et al. 2023, "Trusting Your Evidence"): at each step the scores are
`(1 + a) * logits(with context) - a * logits(without context)` and the argmax is taken; two forward passes per
token, each with its own cache. The prompt without context is the same rendered prompt with the context's tokens
cut out (template and question kept), so both passes tokenize the question identically.

Parameters: `a` (float, default 0.5: the paper's; kept by the tuning on the tune split, where a = 1.0 scored
0.333 against 0.467: `docs/runs/answer-tune-smollm2`). a = 0 is greedy.
Left out on purpose: sampling (the paper also samples; we decode greedily) and the paper's per-task a.
"""

from __future__ import annotations

from ..base import AnswerMethod, Choice
from ..registry import register_method
from .greedy import pick


@register_method("cad")
class CAD(AnswerMethod):
    """See the module docstring."""

    help = "context-aware decoding, Shi et al. 2023: (1+a) logits(ctx) - a logits(no ctx) (2 passes per token)"
    baseline = True
    order = 10
    params = {"a": 0.5}

    def start(self, run) -> None:
        run.open_pass("ctx", run.prompt.input_ids)
        run.open_pass("noctx", run.no_context_ids())

    def step(self, run) -> Choice:
        a = self.p["a"]
        with_ctx = run.passes["ctx"].logits()
        if a == 0:
            return pick(with_ctx)
        return pick((1 + a) * with_ctx - a * run.passes["noctx"].logits())
