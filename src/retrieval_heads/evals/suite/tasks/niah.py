"""RULER's retrieval family: needle-in-a-haystack variants (single, multi-key, multi-value, multi-query).

Needles read "One of the special magic {numbers} for {key} is: {value}." Haystacks, per RULER's synthetic.yaml:
`noise` (the repeated noise sentence, one per line; n = lines), `essay` (the Paul Graham essays; n = words;
needles at sentence ends at RULER's depths) and `needle` (every line is a needle of another random key;
n = lines). Keys and values are `words` (word pairs), `numbers` (7 digits) or `uuids`. With one query and one
value the template is RULER's singular form ("A special magic number is hidden ...").

Left out on purpose: RULER's shuffling of needles with the global seed (each sample's own seed orders them).
"""

from __future__ import annotations

import random

from ..common import NOISE, insert_at_depths, insert_lines, random_value, split_sentences
from ..registry import Built, SuiteTask, register_task

NEEDLE = "One of the special magic {kind} for {key} is: {value}."
PLURAL = ("Some special magic {kind} are hidden within the following text. Make sure to memorize it. I will quiz you "
          "about the {kind} afterwards.\n{context}\nWhat are all the special magic {kind} for {query} mentioned in "
          "the provided text?", " The special magic {kind} for {query} mentioned in the provided text are")
SINGULAR = ("A special magic {kind} is hidden within the following text. Make sure to memorize it. I will quiz you "
            "about the {kind} afterwards.\n{context}\nWhat is the special magic {kind} for {query} mentioned in "
            "the provided text?", " The special magic {kind} for {query} mentioned in the provided text is")


@register_task("niah_single_1", haystack="noise", key="words", value="numbers")
@register_task("niah_single_2", haystack="essay", key="words", value="numbers")
@register_task("niah_single_3", haystack="essay", key="words", value="uuids")
@register_task("niah_multikey_1", haystack="essay", key="words", value="numbers", keys=4)
@register_task("niah_multikey_2", haystack="needle", key="words", value="numbers")
@register_task("niah_multikey_3", haystack="needle", key="uuids", value="uuids")
@register_task("niah_multivalue", haystack="essay", key="words", value="numbers", values=4)
@register_task("niah_multiquery", haystack="essay", key="words", value="numbers", queries=4)
class Niah(SuiteTask):
    family, metric, tokens_to_generate = "retrieval", "string_match_all", 128

    def __init__(self, haystack: str, key: str, value: str, keys: int = 1, values: int = 1, queries: int = 1):
        super().__init__(haystack=haystack, key=key, value=value, keys=keys, values=values, queries=queries)
        self.haystack, self.key, self.value = haystack, key, value
        self.keys, self.values, self.queries = max(keys, queries), values, queries
        self.unit = {"essay": "essay words", "noise": "noise lines", "needle": "needle lines"}[haystack]
        self.description = (f"{self.keys} key(s) of {key}, {values} {value} value(s) each, {queries} queried; "
                            f"{ {'essay': 'Paul Graham essays', 'noise': 'repeated noise', 'needle': 'other needles'}[haystack]}"
                            " as haystack")

    def build(self, ctx, seed: int, n: int, index: int = 0) -> Built:
        rng = random.Random(seed)
        keys, values, needles = [], [], []
        for _ in range(self.keys):
            keys.append(random_value(rng, self.key))
            values.append([random_value(rng, self.value) for _ in range(self.values)])
            needles += [NEEDLE.format(kind=self.value, key=keys[-1], value=v) for v in values[-1]]
        rng.shuffle(needles)
        asked = rng.sample(range(self.keys), self.queries)
        hay = random.Random(rng.getrandbits(64))  # the haystack's draws, apart from the needles'
        if self.haystack == "essay":
            context = insert_at_depths(split_sentences(ctx.essay(n)), needles, hay)
        elif self.haystack == "noise":
            context = insert_lines([NOISE] * n, needles, hay)
        else:
            lines = [NEEDLE.format(kind=self.value, key=random_value(hay, self.key), value=random_value(hay, self.value))
                     for _ in range(n)]
            context = insert_lines(lines, needles, hay)
        query = [keys[i] for i in asked]
        query = query[0] if len(query) == 1 else ", ".join(query[:-1]) + ", and " + query[-1]
        single = self.queries * self.values == 1
        template, prefix = SINGULAR if single else PLURAL
        kind = self.value[:-1] if single else self.value
        return Built(template.format(kind=kind, context=context, query=query), prefix.format(kind=kind, query=query),
                     [v for i in asked for v in values[i]])
