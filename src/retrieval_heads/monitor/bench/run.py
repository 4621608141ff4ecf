"""The labelled benchmark: the model answers every item with monitoring on, the judge labels the answers, and
`evaluation.py` compares the monitor with the baselines on those very answers.

`run_bench(model, tokenizer, config, out)` writes, in `out`:
- config.json: the `BenchConfig`, the model, the head sets;
- items.jsonl: a header, then one record per item, flushed as it goes (a rerun of the same command resumes):
  the recipe, the answer, the judgment and label, and per answer token the signals of every head set
  (retrieval heads weighted by score; the same heads unweighted; all heads; `random_seeds` draws of as many
  non-retrieval heads), log-probabilities, entropies, RAUQ's per-token values, the token labels; per answer
  the monitor's report, the baselines and the Lookback Lens features (each head's mean lookback ratio);
- arrays/<id>.npz: per token and head, what the supervised comparator needs at token level (lookback ratios);
- summary.json and tables.md (`evaluation.py`).
Every setting is checked before `out` is touched (`prepare`): a bad run writes nothing.
`shard` ("i/n") runs the i-th of n parts of the planned items, balanced by their prompt lengths in tokens
(`cluster/shard.py`): the shard's folder is a whole run over those items (its summary covers them), with
shard.json naming them; `rheads merge` combines the n folders (records, and arrays/ by item id) and evaluates the
whole run once more, so its summary and tables are the unsharded run's.
All of it comes from the one generation that produced the answer: the monitor records every head while the
answer is generated, and the logit baselines read that generation's logits.

Left out on purpose: batching (one prompt at a time, as a user would monitor), and masking heads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ...cluster.shard import select
from ...config import Config, ModelConfig
from ...errors import ParamError
from ...heads.masks import check_dims, select_heads
from ...heads.scores import HeadScores
from ...io.rundir import open_run
from ...models.info import model_dims, model_key, model_meta
from ...probes.haystack import get_haystack
from ...scoring.judge import judge
from ...version import FORMAT_VERSION, __version__
from .items import BenchItem, label_of, materialize, plan, token_labels
from ..monitor import Monitor
from ..signals import PRIMARY_SET


@dataclass
class BenchConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    scores: str = ""
    threshold: float = 0.1
    lengths: list[int] = field(default_factory=lambda: [1000, 2000, 4000, 8000])
    depths: list[float] = field(default_factory=lambda: [0, 25, 50, 75, 100])
    niah_per_cell: int = 2  # depths per (needle, length)
    cf_per_cell: int = 1  # depths per (fact, length)
    unanswerable_per_cell: int = 0  # depths per (fact, length) with the fact missing (items.py)
    needles: str = "eval"
    haystack: str = "paul-graham"
    template: str = "default"
    chat: bool | None = None
    max_new_tokens: int = 48
    random_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    seed: int = 42  # item order
    limit: int | None = None  # first N items of the order (None: all)
    shard: str | None = None  # "i/n": only the i-th of n cost-balanced parts of the items (cluster/shard.py)


def head_sets(scores: HeadScores, threshold: float, num_layers: int, num_heads: int,
              seeds: list[int]) -> dict[str, list[tuple[int, int]]]:
    """The comparison head sets (uniform weights): the retrieval heads, all heads, random non-retrieval draws."""
    retrieval = scores.above(threshold)
    sets = {"retrieval-uniform": retrieval,
            "all": [(l, h) for l in range(num_layers) for h in range(num_heads)]}
    for s in seeds:
        sets[f"random-s{s}"] = select_heads(f"random:{len(retrieval)}", num_layers, num_heads, scores=scores,
                                            threshold=threshold, seed=s)
    return sets


def _r(xs, nd: int = 5) -> list[float]:
    return [round(float(x), nd) for x in xs]


def item_record(item: BenchItem, rep, seconds: float) -> dict[str, Any]:
    """One items.jsonl record from an item and its monitored AnswerReport (with `raw`)."""
    toks = rep.tokens
    spans = [(t.start, t.end) for t in toks]
    j = judge(rep.answer, item.gold)
    label = label_of(j)
    signals = {"retrieval": {"copy": _r(t.copy for t in toks), "copy_q": _r(t.copy_q for t in toks),
                             "mass": _r(t.mass for t in toks)}}
    for name in (toks[0].sets if toks else {}):
        signals[name] = {k: _r(t.sets[name][k] for t in toks) for k in ("copy", "copy_q", "mass")}
    lr = rep.raw["lr"] if rep.raw is not None else np.zeros((0, 0))
    return {
        "type": "item", "id": item.id, "kind": item.kind, "source": item.source, "length": item.length,
        "depth": item.depth, "question": item.question, "gold": item.gold, "common": item.common,
        "prompt_tokens": rep.prompt_tokens, "response": rep.answer, "reason": rep.reason, "judge": j,
        "label": label, "parametric": (judge(rep.answer, item.common)["contains"] if item.common else None),
        "token_ids": [t.token_id for t in toks], "tokens": [t.text for t in toks], "spans": [list(s) for s in spans],
        "content": [t.content for t in toks], "echo": [t.echo for t in toks],
        "absent": [t.absent for t in toks], "verbatim": rep.verbatim,
        "token_labels": token_labels(rep.answer, spans, label, item.question, item.gold),
        "signals": signals, "logprobs": _r(t.logprob for t in toks), "entropies": _r(t.entropy for t in toks),
        "rauq_tokens": _r(rep.raw["rauq_tokens"]) if rep.raw is not None else [],
        "monitor": {"hallucination_score": rep.hallucination_score, "verdict": rep.verdict,
                    "unsupported": [list(s) for s in rep.unsupported], "scores": rep.scores,
                    "token_scores": _r(t.score for t in toks)},
        "baselines": rep.baselines,
        "lookback": _r(lr.mean(axis=0), 4) if len(lr) else [],
        "seconds": round(seconds, 2),
    }


def _shard(items: list[BenchItem], config: BenchConfig, out: Path | None = None) -> list[BenchItem]:
    """This shard's items (all without a shard), balanced by prompt length in tokens; with `out`, its manifest."""
    return select(items, config.shard, cost=lambda it: it.length, key=lambda it: it.id, out=out,
                  jsonl="items.jsonl", kind="item", what="items")


def _check_lengths(config: BenchConfig, items: list[BenchItem], max_ctx: int | None) -> None:
    """The lengths are token counts, and those of the planned items (all, or the first `limit`) fit the model."""
    bad = [n for n in config.lengths if isinstance(n, bool) or not isinstance(n, int) or n < 1]
    if bad or not config.lengths:
        raise ParamError("lengths", config.lengths, "prompt lengths are whole numbers of tokens >= 1")
    room = (max_ctx or 0) - config.max_new_tokens
    over = sorted({it.length for it in items if max_ctx and it.length > room})
    if over:
        raise ParamError("lengths", config.lengths, f"a prompt of {over[0]} tokens and an answer of up to "
                         f"{config.max_new_tokens} ({{max_new_tokens}}) do not fit the model's context of {max_ctx} "
                         f"tokens: use lengths up to {room}")


def prepare(model, tokenizer, config: BenchConfig) -> tuple[list[BenchItem], Monitor, str, dict[str, Any]]:
    """Everything a run needs, checked before anything is written: (items, monitor, haystack text, meta). Raises
    the one-line error of the first bad setting (lengths against the model's context, counts, the score file's
    shape, the heads above the threshold, the haystack, an item too long for its length)."""
    L, H, max_ctx = model_dims(model)
    scores = HeadScores.load(config.scores)
    check_dims(scores, L, H, source=config.scores)
    sets = head_sets(scores, config.threshold, L, H, config.random_seeds)
    mon = Monitor(model, tokenizer, scores, threshold=config.threshold, template=config.template, chat=config.chat,
                  max_new_tokens=config.max_new_tokens, compare=sets, baselines=True)
    items = plan(config.lengths, config.depths, niah_per_cell=config.niah_per_cell, cf_per_cell=config.cf_per_cell,
                 unanswerable_per_cell=config.unanswerable_per_cell, needles=config.needles, seed=config.seed,
                 limit=config.limit)
    _check_lengths(config, items, max_ctx)
    _shard(items, config)  # a bad shard is refused here, before out is touched
    haystack = get_haystack(config.haystack)
    shortest: dict[tuple[str, str], BenchItem] = {}  # per source its shortest item: the one a length may not fit
    for it in items:
        key = (it.kind, it.source)
        if key not in shortest or it.length < shortest[key].length:
            shortest[key] = it
    for it in shortest.values():
        mon.check(materialize(it, tokenizer, haystack, config.template, config.chat, max_ctx or None), it.question)
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "model_key": model_key(model), "model": model_meta(model), "items": len(items),
            "head_sets": {PRIMARY_SET: [f"{l}-{h}" for l, h in scores.above(config.threshold)],
                          **{k: [f"{l}-{h}" for l, h in v] for k, v in sets.items() if k != "all"}}}
    return items, mon, haystack, meta


def run_bench(model, tokenizer, config: BenchConfig, out: str | Path, *, overwrite: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the benchmark; returns the summary of `evaluation.evaluate_run` (also in out/summary.json).
    Every setting is checked (`prepare`) before `out` is touched."""
    out = Path(out)
    items, mon, haystack, meta = prepare(model, tokenizer, config)
    max_ctx = mon.max_context
    done, writer = open_run(out, meta, keys=("config", "model_key"), jsonl="items.jsonl", kind="item",
                            defaults={"config": config.defaults()}, overwrite=overwrite)
    (out / "arrays").mkdir(exist_ok=True)
    items = _shard(items, config, out)
    todo = [it for it in items if it.id not in done]
    with writer:
        for item in tqdm(todo, desc="monitor bench", disable=not progress, initial=len(items) - len(todo),
                         total=len(items)):
            context = materialize(item, tokenizer, haystack, config.template, config.chat, max_ctx or None)
            t0 = time.perf_counter()
            rep = mon.run(context, item.question, keep=True)
            seconds = time.perf_counter() - t0
            if rep.raw is not None:
                np.savez_compressed(out / "arrays" / f"{item.id}.npz", lr=rep.raw["lr"].astype(np.float16),
                                    copy=rep.raw["copy"], mass=rep.raw["mass"].astype(np.float16))
            writer.write(item_record(item, rep, seconds))
    from .evaluation import evaluate_run  # here, not at the top: a long run evaluates with the code of its end

    return evaluate_run(out)
