"""RULER's aggregation family: common words (`cwe`) and frequent coded words (`fwe`).

- `cwe`: a numbered list of n distinct words, 10 of them common (each repeated 30 times; the others 3 times),
  shuffled; the gold strings are the 10 common words. One worked example comes first. Below a 4096-token
  target RULER uses lighter settings, and so does this: 6 and 1 repeats, an example of 20 words (3 and 1)
  instead of 40 (10 and 3).
- `fwe`: coded words (6 random letters) drawn with Zipf counts `n * k^-2 / zeta(2)` over a vocabulary of
  target // 50 words, shuffled; the most frequent one is replaced by '...' (noise) and the gold strings are
  the next three (n = words before the Zipf counts).

Left out on purpose: RULER's fallback English list for cwe (lengths needing more distinct words than
`common.words()` holds are refused), and fwe's vocabulary-size option.
"""

from __future__ import annotations

import math
import random
import string

from ....errors import ParamError
from ..common import words
from ..registry import Built, SuiteTask, register_task

CWE = ("Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones "
       "that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?")
CWE_PREFIX = " Answer: The top 10 words that appear most often in the list are:"
FWE = ("Read the following coded text and track the frequency of each coded word. Find the three most frequently "
       "appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. "
       "What are the three most frequently appeared words in the above coded text?")
FWE_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"


def _word_list(rng: random.Random, n: int, common: int, reps: int, rare_reps: int) -> tuple[str, list[str]]:
    picked = rng.sample(words(), n)
    top, rare = picked[:common], picked[common:]
    listed = top * reps + rare * rare_reps
    rng.shuffle(listed)
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(listed)), top


@register_task("cwe", common=10)
class CommonWords(SuiteTask):
    family, metric, tokens_to_generate = "aggregation", "string_match_all", 120
    unit = "distinct words"

    def __init__(self, common: int = 10):
        super().__init__(common=common)
        self.common = common
        self.min_units = common
        self.description = f"common words: name the {common} words repeated most often in a numbered list"

    def max_units(self, ctx) -> int | None:
        return len(words())

    def build(self, ctx, seed: int, n: int, index: int = 0) -> Built:
        if n > len(words()):
            raise ParamError("lengths", ctx.target, f"cwe at this length needs more than the {len(words())} distinct "
                             "words of the suite's word list: use a shorter length")
        rng = random.Random(seed)
        small = ctx.target < 4096
        ex_ctx, ex_top = _word_list(rng, 20 if small else 40, self.common, 3 if small else 10, 1 if small else 3)
        example = (CWE.format(context=ex_ctx) + CWE_PREFIX + " " + " ".join(f"{i + 1}. {w}" for i, w in enumerate(ex_top)))
        main, top = _word_list(rng, n, self.common, 6 if small else 30, 1 if small else 3)
        return Built(example + "\n" + CWE.format(context=main), CWE_PREFIX, top)


def _zeta(alpha: float, terms: int = 100000) -> float:
    s = sum(k ** -alpha for k in range(1, terms + 1))
    return s + terms ** (1 - alpha) / (alpha - 1)  # the tail's integral


@register_task("fwe", alpha=2.0)
class FrequentWords(SuiteTask):
    family, metric, tokens_to_generate = "aggregation", "string_match_all", 50
    unit = "words (before Zipf counts)"

    def __init__(self, alpha: float = 2.0, letters: int = 6):
        super().__init__(alpha=alpha, letters=letters)
        self.alpha, self.letters = alpha, letters
        self.zeta = _zeta(alpha)
        self.min_units = int(16 * self.zeta) + 1  # the 4th most frequent word occurs at least once
        self.description = f"frequent words: the 3 most frequent coded words of a Zipf({alpha:g}) text"

    def build(self, ctx, seed: int, n: int, index: int = 0) -> Built:
        rng = random.Random(seed)
        size = max(4, (ctx.target - self.tokens_to_generate) // 50)
        vocab: set[str] = set()
        while len(vocab) < size:
            vocab.add("".join(rng.choices(string.ascii_lowercase, k=self.letters)))
        ranked = sorted(vocab)
        rng.shuffle(ranked)
        ranked[0] = "..."  # the most frequent is noise
        counts = [int(n * (k ** -self.alpha) / self.zeta) for k in range(1, len(ranked) + 1)]
        text = [w for w, c in zip(ranked, counts) for _ in range(c)]
        random.Random(rng.getrandbits(64)).shuffle(text)
        return Built(FWE.format(context=" ".join(text)), FWE_PREFIX, ranked[1:4])
