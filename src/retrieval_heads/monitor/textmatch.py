"""Text matching between emitted answer tokens and prompt tokens, so that a copy counts when the same text is
tokenized differently in the context and in the answer (` Athens`, one token with a leading space, in the
context; `Ath` + `ens` in the answer), and the answer-level text rules (`rules.py`) read words.

- `norm(text)`: stripped and case-folded; `texts_match(a, b)`: both non-empty and one a prefix of the other.
  `copy_match(source, emitted)`, the monitor's: equal, or the emitted text a prefix of the source's of 2 or more
  characters (a one-letter token, or the digit `4` against `40`, is no evidence of a copy; nor is a short source
  such as ` to` against an emitted `Tokyo`: the source must hold all of the emitted text).
- Words are runs of letters and digits (`WORD`). `word_around(text, a, b)` is the whole word of `text` that the
  characters [a, b) touch (its first word character), `word_so_far(answer, a, b)` the answer's word through the
  last word character of [a, b): the emitted part of a word that may span several tokens.
- `SlotTexts(prompt)`: per prompt slot of the context or question, its token's text and its word, from the
  prompt's character offsets (the exact characters, no re-decoding). `matches(slot, piece, word)`: the emitted
  token (`piece`, its text; `word`, its word so far) matches the slot when the token texts match or the words
  do (a function word of the context, `STOPWORDS`, matches by its token text only). Only tokens that hold a
  letter or digit match by text; the others match by token id alone (the caller's).

Left out on purpose: paraphrase, number words against digits ("four" against "4"), and inflection beyond a
prefix (the word rules in `rules.py` allow a prefix of 4 or more characters).
"""

from __future__ import annotations

import re

WORD = re.compile(r"[^\W_]+")
STOPWORDS = frozenset(  # function words: they never count as content (`rules.py`) nor match by word here
    "a an the of to in on at by for from with about as into onto is are was were be been being am it its this that "
    "these those and or but if so than then there their they them he she his her him we our us you your i my me "
    "do does did has have had not no yes which who whom whose what when where why how also very just can could "
    "will would shall should may might must s".split())
_ALNUM = re.compile(r"[^\W_]")


def norm(text: str) -> str:
    return text.strip().casefold()


def texts_match(a: str, b: str) -> bool:
    return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


def copy_match(source: str, emitted: str) -> bool:
    """Is the emitted text (a token's, or its word so far) a copy of the prompt's `source` text? Equal, or a prefix
    of it of 2 or more characters. Never the other way round: a short source (`to`, `at`) is no copy of a longer
    emitted word (`Tokyo`, `Athens`); a source word cut into several tokens is matched by its whole word."""
    return bool(emitted) and (source == emitted or (len(emitted) >= 2 and source.startswith(emitted)))


def token_match(source: str, emitted: str) -> bool:
    """Token texts alone, without their words (the answering methods' support test): `copy_match`, or a source
    token of 3 or more characters, no function word, that begins the emitted one (a context word cut into tokens,
    emitted as one)."""
    return copy_match(source, emitted) or (len(source) >= 3 and source not in STOPWORDS
                                           and emitted.startswith(source))


def has_word_char(text: str) -> bool:
    return bool(_ALNUM.search(text))


def word_around(text: str, a: int, b: int) -> str:
    """The normalised whole word of `text` that [a, b) touches first ("" when [a, b) holds no letter or digit)."""
    m = _ALNUM.search(text, a, b) if b > a else None
    if m is None:
        return ""
    i = j = m.start()
    while i > 0 and _ALNUM.match(text[i - 1]):
        i -= 1
    while j < len(text) and _ALNUM.match(text[j]):
        j += 1
    return text[i:j].casefold()


def word_so_far(answer: str, a: int, b: int) -> str:
    """The normalised answer word through the last letter or digit of [a, b) ("" when there is none)."""
    last = None
    for m in _ALNUM.finditer(answer, a, b):
        last = m.start()
    if last is None:
        return ""
    i = last
    while i > 0 and _ALNUM.match(answer[i - 1]):
        i -= 1
    return answer[i: last + 1].casefold()


class SlotTexts:
    """Per slot of a `MonitorPrompt`: the normalised token text and word of its context or question characters
    ("" for template and special tokens)."""

    def __init__(self, prompt):
        n = prompt.n
        self.text, self.word = [""] * n, [""] * n
        for s in range(n):
            hit = prompt.source_of(s)
            if hit is None:
                continue
            kind, a, b = hit
            src = prompt.context if kind == "context" else prompt.question
            self.text[s] = norm(src[a:b])
            self.word[s] = word_around(src, a, b)

    def matches(self, slot: int, piece: str, word: str) -> bool:
        """Does the emitted token (normalised `piece`, and its `word` so far) match the slot's text (see above)?"""
        if not (0 <= slot < len(self.text)) or not has_word_char(piece):
            return False
        w = self.word[slot]
        return copy_match(self.text[slot], piece) or (w not in STOPWORDS and copy_match(w, word))
