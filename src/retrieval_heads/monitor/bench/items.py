"""The labelled benchmark's items: NIAH and counterfactual-context QA, over lengths and depths, and the labels
of the model's own answers.

- NIAH: an `eval` needle (disjoint from the `detect` needles that found the heads) in the Paul Graham essays;
  the gold answer is the needle's answer span;
- counterfactual QA (`data/counterfactual.jsonl`, 64 facts): a sentence that contradicts common knowledge ("The
  capital of France is Lyon.") placed in the same haystack; the gold answer is the context's ("Lyon"), so an
  answer from parametric memory ("Paris") is wrong. `common` keeps the real-world answer.
- unanswerable QA (optional, `unanswerable_per_cell`): a counterfactual question whose sentence is missing; the
  haystack holds another counterfactual fact's sentence instead, on another subject ("Water freezes at 40
  degrees Celsius." for the question on France). The context does not answer, so the gold answer is empty: any
  answer is unsupported and wrong (label 1, whether it comes from memory or from the distractor), and a refusal
  is kept apart.
  It gives models that are at their ceiling on the first two kinds (Qwen) a natural share of wrong answers:
  the model's own answers, no head masked.
Each item is rebuilt from its recipe (kind, source id, length, depth) with `probes.build_probe` and the monitor's
template, so a labelled set stores no context text. `plan` orders the items by a seeded shuffle, so a run cut
short still covers every kind, length and depth.

Labels (`label_of`), from the answer judge (`scoring.judge`):
  0 (right): class correct, or partial with ROUGE-1 recall >= 0.5;
  1 (wrong): class hallucinated, or partial with recall < 0.5;
  None: refusal and degenerate answers, kept apart (counted, and scored in a secondary table).
Token labels (`token_labels`): in a wrong answer, a content token is 1 when its word appears neither in the
question nor in the gold answer; every token of a right answer is 0.

Left out on purpose: inducing errors by masking heads (the monitor reads the same heads: that would be circular)
and LLM judging.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from importlib import resources

from ...errors import ParamError, RHeadsError
from ...probes.build import build_probe
from ...probes.needles import Needle, get_needles
from ..rules import STOPWORDS, word_flags

KINDS = ("niah", "counterfactual", "unanswerable")
TASKS = ("niah", "counterfactual")  # the two tasks of Lookback's cross-task test and of the per-task subsets


def task_of(kind: str) -> str:
    """The task of an item kind: unanswerable items ask the counterfactual facts' questions, so they belong to
    the counterfactual task (they hold only wrong answers and refusals, so they are not a task of their own)."""
    return "niah" if kind == "niah" else "counterfactual"


@dataclass(frozen=True)
class BenchItem:
    id: str
    kind: str  # niah, counterfactual or unanswerable
    source: str  # needle index (n-03) or fact id (cf-12)
    length: int
    depth: float
    question: str
    gold: str
    common: str | None  # counterfactual, unanswerable: the real-world answer
    statement: str  # the sentence hidden in the haystack


def counterfactual_facts() -> list[dict]:
    text = resources.files("retrieval_heads.monitor").joinpath("data", "counterfactual.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def plan(lengths: list[int], depths: list[float], *, niah_per_cell: int = 2, cf_per_cell: int = 1,
         unanswerable_per_cell: int = 0, needles: str = "eval", seed: int = 42,
         limit: int | None = None) -> list[BenchItem]:
    """Every (source, length) with `*_per_cell` depths each (rotating through `depths`), in a seeded order."""
    if not lengths:
        raise ParamError("lengths", lengths, "the benchmark needs at least one length")
    if not depths:
        raise ParamError("depths", depths, "the benchmark needs at least one depth")
    bad = [d for d in depths if not 0 <= d <= 100]
    if bad:
        raise ParamError("depths", depths, "depths are percent of the context, 0 to 100")
    counts = {"niah_per_cell": niah_per_cell, "cf_per_cell": cf_per_cell,
              "unanswerable_per_cell": unanswerable_per_cell}
    for k, v in counts.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ParamError(k, v, "give a whole number of depths per cell, >= 0")
    if not any(counts.values()):
        raise ParamError("niah_per_cell", niah_per_cell, "every per-cell count is 0: give at least one above 0 "
                         "({cf_per_cell}, {unanswerable_per_cell})")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ParamError("limit", limit, "give a number of items >= 1, or leave it out for all")
    items: list[BenchItem] = []
    for i, nd in enumerate(get_needles(needles)):
        for li, length in enumerate(lengths):
            for j in range(niah_per_cell):
                depth = depths[(i + li + j * 2) % len(depths)]
                items.append(BenchItem(f"niah-{i:02d}-{length}-{depth:g}", "niah", f"n-{i:02d}", length, depth,
                                       nd.question, nd.real_needle, None, nd.needle))
    facts = counterfactual_facts()
    for i, f in enumerate(facts):
        for li, length in enumerate(lengths):
            for j in range(cf_per_cell):
                depth = depths[(i + li + j * 2) % len(depths)]
                items.append(BenchItem(f"{f['id']}-{length}-{depth:g}", "counterfactual", f["id"], length, depth,
                                       f["question"], f["answer"], f["common"], f["statement"]))
    for i, f in enumerate(facts):
        other = facts[(i + len(facts) // 2) % len(facts)]  # a distractor on another subject
        for li, length in enumerate(lengths):
            for j in range(unanswerable_per_cell):
                depth = depths[(i + li + j * 2 + 1) % len(depths)]
                items.append(BenchItem(f"un-{f['id']}-{length}-{depth:g}", "unanswerable", f["id"], length, depth,
                                       f["question"], "", f["common"], other["statement"]))
    random.Random(seed).shuffle(items)
    return items[:limit] if limit else items


_CONTEXT = re.compile(r"<context>\n(.*)\n</context>", re.S)


def materialize(item: BenchItem, tokenizer, haystack: str, template: str = "default", chat: bool | None = None,
                max_context: int | None = None) -> str:
    """The item's context text: the haystack with its sentence at the item's depth, sized so that the whole
    prompt (template and question included) has about `item.length` tokens."""
    # an unanswerable item has no gold answer: its sentence stands for the span that build_probe checks
    needle = Needle(needle=item.statement, question=item.question, real_needle=item.gold or item.statement)
    probe = build_probe(tokenizer, haystack, needle, item.length, item.depth, template, chat, max_context=max_context)
    m = _CONTEXT.search(probe.prompt_text)
    if m is None:
        raise RHeadsError("the benchmark's template must wrap the context as <context>\\n...\\n</context> "
                          "(the default template does)")
    return m.group(1)


def label_of(judgment: dict) -> int | None:
    cls = judgment["class"]
    if cls == "correct":
        return 0
    if cls == "partial":
        return 0 if judgment["rouge1_recall"] >= 0.5 else 1
    if cls == "hallucinated":
        return 1
    return None


def token_labels(answer: str, spans: list[tuple[int, int]], label: int | None, question: str,
                 gold: str) -> list[int | None]:
    """Per token: 1/0 for content tokens (module docstring), None for the others or for unlabelled answers."""
    content = word_flags(answer, spans)
    if label is None:
        return [None] * len(spans)
    known = {w.lower() for w in re.findall(r"[^\W_]+", question + " " + gold)} | STOPWORDS
    words = [(m.start(), m.end(), m.group().lower()) for m in re.finditer(r"[^\W_]+", answer)]
    out: list[int | None] = []
    for (a, b), c in zip(spans, content):
        if not c:
            out.append(None)
        elif label == 0:
            out.append(0)
        else:
            mine = [w for ws, we, w in words if ws < b and we > a]
            out.append(int(any(w not in known for w in mine)))
    return out
