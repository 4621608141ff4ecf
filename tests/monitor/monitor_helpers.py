"""What the monitor tests share besides fixtures: the tiny haystack and template, the texts the tiny tokenizer is
trained on, and hand-made score files. (Named uniquely: tests import it by name, which `conftest` is not.)"""

from __future__ import annotations

import numpy as np

from retrieval_heads.heads.scores import HeadScores
from retrieval_heads.monitor.bench.items import counterfactual_facts
from retrieval_heads.probes.needles import get_needles
from tiny import word_haystack

HAYSTACK = word_haystack(200)
TEMPLATE = ("<context> </context> Based only on the context above, answer the question in a short sentence. "
            "Question: Answer:")
RETRIEVAL = {(1, 0): 0.8, (2, 3): 0.5, (2, 1): 0.2}  # (layer, head): score; the rest score 0 or 0.05


def texts() -> list[str]:
    return [HAYSTACK, TEMPLATE, *[f"{n.needle} {n.question}" for n in get_needles("eval")],
            *[f"{f['statement']} {f['question']} {f['common']}" for f in counterfactual_facts()]]


def make_scores(L: int = 3, H: int = 4, retrieval: dict | None = None) -> HeadScores:
    m = np.full((L, H), 0.0)
    m[0, 1] = 0.05
    for (l, h), s in (RETRIEVAL if retrieval is None else retrieval).items():
        m[l, h] = s
    scores = HeadScores.empty(L, H)
    scores.add_sample(m)
    return scores
