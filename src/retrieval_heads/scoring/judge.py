"""The answer judge: one response against the expected answer, deterministic.

- `score`: ROUGE-1 recall of the answer in the response, x100, as in Wu et al. 2024;
- `contains`: the answer appears in the response, case- and punctuation-insensitive, on word boundaries;
- `class`: one of RESPONSE_CLASSES, decided in this order (first match wins):
  1. refusal     - empty after stripping (refusal/empty);
  2. correct     - `contains`, or recall >= 0.99;
  3. degenerate  - repetition: no word characters at all, or one n-gram (n=1..4) repeated (>= 4 times for
                   n=1, >= 3 for n>=2) covering at least half of the words, or < 30% distinct words in 12+;
  4. refusal     - a refusal phrase ("I don't know", "not mentioned", "no information", "cannot", ...);
  5. partial     - shares at least one content word (not a stopword) with the answer;
  6. hallucinated - a non-empty, non-repetitive, non-refusing answer sharing no content word with the
                   answer. "Fluent" is checked only as "not degenerate"; whether the wrong answer was copied
                   from elsewhere in the context is not checked.
  Content words, not ROUGE tokens, separate partial from hallucinated, so that "a" or "the" shared with
  the answer does not make a made-up answer partial; the cell score stays the paper's ROUGE-1 recall.

Left out on purpose: LLM judging and semantic equivalence.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from .rouge import rouge1_recall

RESPONSE_CLASSES = ("correct", "partial", "hallucinated", "refusal", "degenerate")

_WORD = re.compile(r"\w+")
_REFUSAL = re.compile(
    r"\b(i don'?t know|i do not know|not mentioned|no information|cannot|can'?t|can not|unable to|no mention|"
    r"not (?:provided|specified|stated|given|available|sure)|not enough information|"
    r"(?:does|did)(?: not|n'?t) (?:say|mention|provide|contain|specify|state|include)|"
    r"there is no (?:information|mention)|i'?m sorry|i am sorry|unknown)\b"
)
_STOPWORDS = frozenset(
    "a an the of to in on at by for from with about as is are was were be been it its this that these those "
    "and or but if so than then there their they he she his her him we our you your i my me".split()
)


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower().replace("_", " ")))


def contains_answer(response: str, answer: str) -> bool:
    """The answer's words appear, in order and adjacent, in the response (case/punctuation-insensitive)."""
    a = _norm(answer)
    return bool(a) and f" {a} " in f" {_norm(response)} "


def is_degenerate(response: str) -> bool:
    """Repetition: see the module docstring for the exact rule."""
    words = _WORD.findall(response.lower())
    n = len(words)
    if n == 0:
        return bool(response.strip())  # only punctuation or symbols
    for g in range(1, 5):
        if n < 2 * g + 2 or (g == 1 and n < 6):
            continue
        c = Counter(tuple(words[i : i + g]) for i in range(n - g + 1)).most_common(1)[0][1]
        if c >= (4 if g == 1 else 3) and c * g >= 0.5 * n:
            return True
    return n >= 12 and len(set(words)) / n < 0.3


def is_refusal(response: str) -> bool:
    text = response.strip().lower().replace("\u2019", "'")
    return not text or bool(_REFUSAL.search(text))


def response_class(response: str, answer: str, recall: float, contains: bool) -> str:
    """One of RESPONSE_CLASSES (rules in the module docstring)."""
    if not response.strip():
        return "refusal"
    if contains or recall >= 0.99:
        return "correct"
    if is_degenerate(response):
        return "degenerate"
    if is_refusal(response):
        return "refusal"
    content = {w for w in _WORD.findall(answer.lower()) if w not in _STOPWORDS} or set(_WORD.findall(answer.lower()))
    if content & set(_WORD.findall(response.lower())):
        return "partial"
    return "hallucinated"


def judge(response: str, answer: str) -> dict[str, Any]:
    """{"score" 0-100, "rouge1_recall", "contains", "class"} of one response against the answer."""
    recall = rouge1_recall(response, answer) if response.strip() else 0.0
    contains = contains_answer(response, answer)
    return {"score": round(100.0 * recall, 4), "rouge1_recall": recall, "contains": contains,
            "class": response_class(response, answer, recall, contains)}
