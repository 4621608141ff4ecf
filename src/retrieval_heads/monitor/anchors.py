"""Where the question's words sit in the context: the anchors of the `anchor` signal (`signals/anchor.py`).

A wrong answer to a question about a context is often a copy of the wrong span (HotpotQA-style contexts: another
entity's date, the other paragraph's name). The copy test cannot see that: the token was copied. What it can see
is where the retrieval heads copied from. `anchors(context, question)` gives the character offsets in the context
of every word that is also a content word of the question (casefolded, not a function word of `rules.STOPWORDS`,
at least 3 characters); `source_distances(tokens, anchors, n)` gives, per answer token copied from the context, the
distance in characters from its copy source to the nearest anchor, as a share of the context's length.

Left out on purpose: entity recognition and coreference (a question's "he" anchors nothing), and any weighting
fitted to labels: the rule was fixed before any benchmark ran.
"""

from __future__ import annotations

import bisect
from typing import Sequence

from .textmatch import STOPWORDS, WORD

MIN_CHARS = 3  # shorter question words ("US", "TV") anchor too much of a context to mean anything


def question_words(question: str) -> set[str]:
    return {w for w in (m.group().casefold() for m in WORD.finditer(question))
            if len(w) >= MIN_CHARS and w not in STOPWORDS}


def anchors(context: str, question: str) -> list[int]:
    """Sorted character offsets in `context` of the words that are content words of `question`."""
    qw = question_words(question)
    return [m.start() for m in WORD.finditer(context) if m.group().casefold() in qw]


def nearest(anchor_list: Sequence[int], pos: int) -> int:
    """The distance from `pos` to the nearest of the sorted `anchor_list` (which must not be empty)."""
    i = bisect.bisect_left(anchor_list, pos)
    best = abs(anchor_list[i] - pos) if i < len(anchor_list) else None
    if i > 0:
        d = pos - anchor_list[i - 1]
        best = d if best is None else min(best, d)
    return int(best)
