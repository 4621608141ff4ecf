"""`anchor`, a head-based signal for a copy of the wrong span: how far from the question's words in the context the
retrieval heads copied the answer's content tokens from.

Per content token whose copy source (the context slot most retrieval-head weight copies from,
`TokenRecord.source`) lies in the context: the distance in characters from that source to the nearest context word
that is also a content word of the question (`monitor/anchors.py`), over the context's length (0 = on a question
word, 1 = the whole context away). The answer's value is the mean over those tokens; an answer that copied no
content token from the context gets 1 (nothing it said is anchored). None when the context holds no word of the
question (nothing to be near). Higher = more likely a wrong copy; stored as the `anchor` statistic.

Left out on purpose: a token level (a token's distance says little alone), and any threshold or weight fitted to
labels.
"""

from __future__ import annotations

from ..anchors import nearest
from .base import AnswerTrace, Signal, register_signal


@register_signal
class Anchor(Signal):
    name = "anchor"
    stat = "anchor"
    ours = True
    order = 16

    def value(self, a: AnswerTrace, qualifier: str | None = None) -> float | None:
        if not a.anchors or a.context_chars <= 0:
            return None
        d = [nearest(a.anchors, s) / a.context_chars for s, c in zip(a.sources, a.content) if c and s is not None]
        return sum(d) / len(d) if d else 1.0
