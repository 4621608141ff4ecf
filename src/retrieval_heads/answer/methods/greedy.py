"""`greedy`: the model's most likely next token at every step, one forward pass per token (the baseline).

No parameters. Left out on purpose: everything else (it is the reference the other methods are measured against).
"""

from __future__ import annotations

from ..base import AnswerMethod, Choice
from ..registry import register_method


def pick(scores) -> Choice:
    """The argmax of [V] scores and its log-probability under their softmax."""
    import torch

    lp = torch.log_softmax(scores.float(), dim=-1)
    tok = int(torch.argmax(scores))
    return Choice(tok, float(lp[tok]), scores)


@register_method("greedy")
class Greedy(AnswerMethod):
    """Plain greedy decoding on the context prompt."""

    help = "plain greedy decoding (1 pass per token)"
    baseline = True
    order = 0

    def step(self, run) -> Choice:
        return pick(run.passes["base"].logits())
