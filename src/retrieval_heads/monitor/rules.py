"""The monitor's token rules, label-free and fixed before the benchmark was run: which answer tokens count, which
are echoes of the question, which are unsupported, and the one verdict of an answer.

- content tokens: a token counts only if the word it belongs to (a run of letters and digits in the answer) has a
  letter or digit and is not a function word (`STOPWORDS`); punctuation and end-of-turn tokens never count;
- echo tokens: more copying weight on the question than on the context (the answer repeats the question, which is
  neither evidence nor invention);
- counted tokens (`counted`): the content tokens that are no echo (the content tokens when none is; every token
  when none is content) — what an answer-level score averages over;
- unsupported tokens: content tokens, no echo, that no head of the set copied from the context (copy = 0: the
  paper's notion, free of the scale of any score);
- the verdict (`verdict`): `supported` (no unsupported token among the content, non-echo tokens), `partly
  unsupported` (under half of them), else `unsupported`; `nothing to check` when there is none (an empty
  answer, or one that only repeats the question). The live report and the benchmark's evaluation both call it.

Left out on purpose: the scores themselves (one file per signal in `signals/`) and records (`score.py`).
"""

from __future__ import annotations

import re
from typing import Sequence

VERDICTS = ("supported", "partly unsupported", "unsupported", "nothing to check")
STOPWORDS = frozenset(
    "a an the of to in on at by for from with about as into onto is are was were be been being am it its this that "
    "these those and or but if so than then there their they them he she his her him we our us you your i my me "
    "do does did has have had not no yes which who whom whose what when where why how also very just can could "
    "will would shall should may might must s".split())

_WORD = re.compile(r"[^\W_]+")


def word_flags(answer: str, spans: list[tuple[int, int]]) -> list[bool]:
    """Per token [start, end) of `answer`: does it overlap a content word (see the module docstring)?"""
    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(answer)]
    out = []
    for a, b in spans:
        out.append(any(ws < b and we > a and w not in STOPWORDS for ws, we, w in words) if b > a else False)
    return out


def is_echo(copy: float, copy_q: float) -> bool:
    return copy_q > copy


def is_unsupported(content: bool, echo: bool, copy: float) -> bool:
    return content and not echo and copy <= 0.0


def counted(content: Sequence[bool], echo: Sequence[bool]) -> list[int]:
    """Indices of the tokens an answer score averages over (module docstring)."""
    n = len(content)
    return ([i for i in range(n) if content[i] and not echo[i]] or [i for i in range(n) if content[i]]
            or list(range(n)))


def verdict(content: Sequence[bool], echo: Sequence[bool], unsupported: Sequence[bool]) -> str:
    """The answer's verdict from its per-token flags (module docstring)."""
    keep = [u for c, e, u in zip(content, echo, unsupported) if c and not e]
    if not keep:
        return VERDICTS[3]
    bad = sum(keep)
    if bad == 0:
        return VERDICTS[0]
    return VERDICTS[1] if bad < 0.5 * len(keep) else VERDICTS[2]
