"""What the suite's task families share: the word list, RULER's random keys and values, the noise sentence,
sentence splitting of essays, needle insertion at RULER's depths, and the generation context (`TaskContext`).

The word list (`data/words.txt`: 3168 lower-case words of 4-9 letters that occur at least twice in the Paul
Graham essays) stands in for RULER's wonderwords lists: keys are `word-word` pairs (RULER: adjective-noun),
cwe draws its words from it. Randomness is a `random.Random` per sample, so a sample depends only on its seed.

Left out on purpose: NLTK's sentence tokenizer (a regex on ., ! and ? before whitespace splits essays) and
RULER's fallback English word list (cwe refuses lengths that need more distinct words than the list holds).
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
DEPTHS = [round(100 * i / 39) for i in range(40)]  # RULER: 40 evenly spaced depths, 0-100 percent
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@lru_cache(maxsize=1)
def words() -> list[str]:
    return (Path(__file__).parent / "data" / "words.txt").read_text().split()


def sample_seed(*parts) -> int:
    """A stable 64-bit seed from the parts (seed, task, length, index)."""
    return int.from_bytes(hashlib.sha256("\0".join(map(str, parts)).encode()).digest()[:8], "big")


def random_value(rng: random.Random, kind: str) -> str:
    """RULER's needle keys and values: a 7-digit number, a word pair, or a UUID4."""
    if kind == "numbers":
        return str(rng.randint(10**6, 10**7 - 1))
    if kind == "words":
        return f"{rng.choice(words())}-{rng.choice(words())}"
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"unknown needle kind {kind!r}")


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if s]


def insert_at_depths(sentences: list[str], needles: list[str], rng: random.Random) -> str:
    """The sentences joined by spaces with each needle inserted at a distinct RULER depth (sorted), as RULER
    places needles in essays."""
    cuts = sorted(int(len(sentences) * d / 100) for d in rng.sample(DEPTHS, len(needles)))
    parts, last = [], 0
    for cut, needle in zip(cuts, needles):
        parts += sentences[last:cut] + [needle]
        last = cut
    return " ".join(parts + sentences[last:])


def insert_lines(lines: list[str], needles: list[str], rng: random.Random) -> str:
    """`lines` with the needles inserted at random line indexes, joined by newlines (RULER's noise and needle
    haystacks)."""
    lines = list(lines)
    for at, needle in zip(sorted(rng.sample(range(len(lines) + 1), len(needles)), reverse=True), needles):
        lines.insert(at, needle)
    return "\n".join(lines)


@dataclass
class TaskContext:
    """What a task builds from: the essay haystack (`haystack`: a name or path of `probes/haystack.py`, read on
    first use), the target length (cwe and fwe scale with it), the QA data source, and caches."""

    haystack: str = "paul-graham"
    target: int = 4000
    qa_data: str | None = None  # HaluEval QA jsonl; None: <cache>/data/dataset_halueval_qa.jsonl
    heldout: str | None = None  # reserved rows file; None: ../shared/data/halueval_qa_heldout_rows.txt
    seed: int = 42
    qa_keep: Callable[[Any], bool] | None = field(default=None, repr=False)  # which QA rows qa_2 may use (all: None)
    _cache: dict = field(default_factory=dict, repr=False)

    def essay_words(self) -> list[str]:
        """The essay haystack as whitespace-separated words (RULER: re.sub(r'\\s+', ' ', essay).split(' '))."""
        if "essay" not in self._cache:
            from ...probes.haystack import get_haystack

            self._cache["essay"] = get_haystack(self.haystack).split()
        return self._cache["essay"]

    def essay(self, n: int) -> str:
        """The first n words of the essays, repeated when they hold fewer."""
        w = self.essay_words()
        reps = -(-n // len(w))
        return " ".join((w * reps)[:n] if reps > 1 else w[:n])
