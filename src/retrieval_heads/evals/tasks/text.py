"""Text answers: the first line of a generation, alias matching, and the cut at a new "Question:".

Left out on purpose: answer normalization beyond case and punctuation, and LLM judging.
"""

from __future__ import annotations

import re

STOP_MARKERS = ("\nQuestion:", "\n\nQuestion")  # a plain-prompt model starting the next exemplar
_WORD = re.compile(r"\w+")


def _norm_words(text: str) -> str:
    return " ".join(_WORD.findall(text.lower().replace("_", " ")))


def first_line(text: str) -> str:
    """The first non-empty line of a generation (cut at the next "Question:")."""
    return next((ln.strip() for ln in cut_generation(text).splitlines() if ln.strip()), "")


def alias_match(text: str, aliases: tuple[str, ...] | list[str]) -> bool:
    """Any alias's words appear, adjacent and in order, in `text` (case/punctuation-insensitive)."""
    t = f" {_norm_words(text)} "
    return any(a and f" {a} " in t for a in (_norm_words(x) for x in aliases))


def cut_generation(text: str) -> str:
    """The generation up to where a plain-prompt model starts a new "Question:"."""
    cut = min((i for i in (text.find(m) for m in STOP_MARKERS) if i >= 0), default=len(text))
    return text[:cut].strip()
