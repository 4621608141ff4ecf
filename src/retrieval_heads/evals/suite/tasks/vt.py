"""RULER's multi-hop tracing family: variable tracking (`vt`), one chain of 4 hops over the noise haystack.

A chain "VAR ABCDE = 12345", "VAR FGHIJ = VAR ABCDE ", ... is spread over the noise lines (n = lines), in
order; the gold strings are the chain's 5 variable names. As in RULER, one worked example (a 3-letter chain
with value 12345 over 5 noise lines, and its answer) comes before the question.

Left out on purpose: several chains and essay haystacks (RULER's options beyond its default `vt`), and sizing
the example to 500 tokens (it has a fixed 5 noise lines).
"""

from __future__ import annotations

import random
import string

from ..common import NOISE
from ..registry import Built, SuiteTask, register_task

TEMPLATE = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
            "Question: Find all variables that are assigned the value {query} in the text above.")
PREFIX = (" Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
          "assigned the value {query}, they are: ")
EXAMPLE_LINES = 5


def _chain(rng: random.Random, hops: int, letters: int, value: str) -> tuple[list[str], list[str]]:
    names: list[str] = []
    while len(names) < hops + 1:
        v = "".join(rng.choices(string.ascii_uppercase, k=letters))
        if v not in names:
            names.append(v)
    lines = [f"VAR {names[0]} = {value}"] + [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(hops)]
    return names, lines


def _spread(rng: random.Random, chain: list[str], n: int) -> str:
    lines = [NOISE] * n
    for j, at in enumerate(sorted(rng.sample(range(n + 1), len(chain)))):
        lines.insert(at + j, chain[j])  # in chain order
    return "\n".join(lines).replace(". \n", ".\n")


@register_task("vt", hops=4)
class VariableTracking(SuiteTask):
    family, metric, tokens_to_generate = "multi-hop", "string_match_all", 30
    unit = "noise lines"
    min_units = 4  # room for the chain's 5 lines

    def __init__(self, hops: int = 4):
        super().__init__(hops=hops)
        self.hops = hops
        self.description = f"variable tracking: one chain of {hops} hops in repeated noise, name every variable"

    def build(self, ctx, seed: int, n: int, index: int = 0) -> Built:
        rng = random.Random(seed)
        ex_names, ex_chain = _chain(rng, self.hops, 3, "12345")
        example = (TEMPLATE.format(context=_spread(rng, ex_chain, EXAMPLE_LINES), query="12345")
                   + PREFIX.format(num_v=self.hops + 1, query="12345") + " ".join(ex_names) + "\n")
        value = str(rng.randint(10000, 99999))
        names, chain = _chain(rng, self.hops, 5, value)
        hay = random.Random(rng.getrandbits(64))
        text = TEMPLATE.format(context=_spread(hay, chain, n), query=value)
        return Built(example + text, PREFIX.format(num_v=self.hops + 1, query=value), names)
