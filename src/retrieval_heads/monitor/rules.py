"""The monitor's token rules, label-free and fixed before the benchmark was run: which answer tokens count, which
are echoes of the question, which are unsupported, and the one verdict of an answer.

- content tokens: a token counts only if the word it belongs to (a run of letters and digits in the answer) has a
  letter or digit and is not a function word (`STOPWORDS`); punctuation and end-of-turn tokens never count;
- echo tokens: more copying weight on the question than on the context (the answer repeats the question, which is
  neither evidence nor invention);
- counted tokens (`counted`): the content tokens that are no echo (the content tokens when none is; every token
  when none is content) — what an answer-level score averages over;
- unsupported tokens: content tokens, no echo, that no head of the set copied from the context (copy = 0: the
  paper's notion, free of the scale of any score); and, whatever the heads did, every content token whose word
  is absent from the context and the question (`absent_words`: an invented name is never supported; a word is
  present when it occurs there, or when it or a word there is a prefix of the other, the shorter of 4 or more
  characters: `euro`, `euros`);
- a short answer copied verbatim (`copied_verbatim`: at most `SHORT_WORDS` words, its words a contiguous run of
  the context's words, case-folded) has no unsupported token: "Four euros." from "... costs four euros ...";
- the verdict (`verdict`): `supported` (no unsupported token among the content, non-echo tokens), `partly
  unsupported` (under half of them), else `unsupported`; `nothing to check` when there is none (an empty
  answer, or one that only repeats the question). An absent word counts even on an echo token; a short verbatim
  copy with a content token is `supported`. The live report and the benchmark's evaluation both call it
  (records written before these two text rules carry no `absent` / `verbatim` and are judged without them).

Left out on purpose: the scores themselves (one file per signal in `signals/`) and records (`score.py`).
"""

from __future__ import annotations

import re
from typing import Sequence

from .textmatch import STOPWORDS, WORD, texts_match

VERDICTS = ("supported", "partly unsupported", "unsupported", "nothing to check")

SHORT_WORDS = 12  # the longest answer, in words, that `copied_verbatim` can call supported
_PREFIX = 4  # the shortest word that, as a prefix of the other, makes an inflected word present (`absent_words`)
_WORD = WORD


def word_flags(answer: str, spans: list[tuple[int, int]]) -> list[bool]:
    """Per token [start, end) of `answer`: does it overlap a content word (see the module docstring)?"""
    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(answer)]
    out = []
    for a, b in spans:
        out.append(any(ws < b and we > a and w not in STOPWORDS for ws, we, w in words) if b > a else False)
    return out


def is_echo(copy: float, copy_q: float) -> bool:
    return copy_q > copy


def _words(text: str) -> list[str]:
    return [m.group().casefold() for m in _WORD.finditer(text)]


def absent_words(answer: str, spans: list[tuple[int, int]], context: str, question: str) -> list[bool]:
    """Per token [start, end) of `answer`: does it overlap a content word absent from the context and the question
    (module docstring)?"""
    known = set(_words(context)) | set(_words(question))
    memo: dict[str, bool] = {}

    def absent(w: str) -> bool:
        if w not in memo:
            memo[w] = w not in known and not (len(w) >= _PREFIX and any(
                len(k) >= _PREFIX and texts_match(k, w) for k in known))
        return memo[w]

    words = [(m.start(), m.end(), m.group().casefold()) for m in _WORD.finditer(answer)]
    return [b > a and any(ws < b and we > a and w not in STOPWORDS and absent(w) for ws, we, w in words)
            for a, b in spans]


def copied_verbatim(answer: str, context: str) -> bool:
    """Is `answer` a short verbatim copy of a run of the context's words (module docstring)?"""
    ans = _words(answer)
    if not ans or len(ans) > SHORT_WORDS or not any(w not in STOPWORDS for w in ans):
        return False
    ctx = " " + " ".join(_words(context)) + " "
    return f" {' '.join(ans)} " in ctx


def is_unsupported(content: bool, echo: bool, copy: float, absent: bool = False, verbatim: bool = False) -> bool:
    return content and not verbatim and (absent or (not echo and copy <= 0.0))


def counted(content: Sequence[bool], echo: Sequence[bool]) -> list[int]:
    """Indices of the tokens an answer score averages over (module docstring)."""
    n = len(content)
    return ([i for i in range(n) if content[i] and not echo[i]] or [i for i in range(n) if content[i]]
            or list(range(n)))


def verdict(content: Sequence[bool], echo: Sequence[bool], unsupported: Sequence[bool],
            absent: Sequence[bool] | None = None, verbatim: bool = False) -> str:
    """The answer's verdict from its per-token flags and the two text rules (module docstring)."""
    absent = list(absent) if absent is not None else [False] * len(content)
    if verbatim and any(content):
        return VERDICTS[0]
    keep = [u or a for c, e, u, a in zip(content, echo, unsupported, absent) if c and (not e or a)]
    if not keep:
        return VERDICTS[3]
    bad = sum(keep)
    if bad == 0:
        return VERDICTS[0]
    return VERDICTS[1] if bad < 0.5 * len(keep) else VERDICTS[2]
