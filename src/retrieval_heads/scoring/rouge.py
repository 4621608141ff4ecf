"""ROUGE-1 recall of an answer in a response, with rouge-score: the paper's settings, Unicode-aware.

The paper scores with `rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)`. Its tokenizer keeps only
[a-z0-9] and so drops every non-ASCII character: a needle in Chinese or Russian would count nothing. Our
tokenizer (`tokenize`) gives the same tokens as rouge-score's on ASCII text (lowercase, split on anything but
letters and digits, Porter-stem words longer than 3 characters) and keeps non-ASCII words too; scripts
written without spaces (Han, kana, Hangul, Thai) count one token per character.

Left out on purpose: other ROUGE variants, and stemmers for languages other than English.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+")  # runs of Unicode letters and digits
_ASCII = re.compile(r"[a-z0-9]+")
_NO_SPACES = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO", "KHMER", "MYANMAR")


def _unspaced(c: str) -> bool:
    return unicodedata.name(c, "").startswith(_NO_SPACES)


class Tokenizer:
    """rouge-score's tokenizer interface (`tokenize(text) -> list[str]`), Unicode-aware (module docstring)."""

    def __init__(self, stem: bool = True):
        from nltk.stem import porter

        self.stemmer = porter.PorterStemmer() if stem else None

    def tokenize(self, text: str) -> list[str]:
        out = []
        for word in _WORD.findall(text.lower()):
            if word.isascii():
                for tok in _ASCII.findall(word):
                    out.append(self.stemmer.stem(tok) if self.stemmer and len(tok) > 3 else tok)
            else:
                run = ""
                for c in word:
                    if _unspaced(c):
                        out += [run] if run else []
                        out.append(c)
                        run = ""
                    else:
                        run += c
                out += [run] if run else []
        return out


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1"], tokenizer=Tokenizer(stem=True))


def rouge1_recall(response: str, reference: str) -> float:
    """ROUGE-1 recall of `reference` (the answer) in `response`, in [0, 1] (the paper's filter uses > 0.5)."""
    return float(_rouge().score(reference, response)["rouge1"].recall)
