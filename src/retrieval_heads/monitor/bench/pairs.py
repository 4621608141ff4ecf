"""`rheads monitor pairs`: short answers, teacher-forced in pairs. Does the monitor call the real-world answer less
supported than the answer the context states?

Each counterfactual fact (`data/counterfactual.jsonl`) is hidden in a haystack at each length (the depths rotate,
as in the benchmark's plan); its context states a changed fact ("The capital of Japan is Osaka."). Two one- or
two-word answers are teacher-forced: the one the context states (`Osaka`) and the real-world one (`Tokyo`). A
signal ranks the pair right when it scores the real-world answer as more hallucinated; a tie counts one half.
Reported per signal, over the pairs: the share ranked right with a bootstrap 95% interval, and the paired
difference of the monitor by text against the monitor by token id (`copy_match`, `textmatch.py`), and against
mean log-probability. The signals: the monitor's score with copies matched by text (`monitor`) and by id
(`monitor[id]`), its `copy` variant both ways, and the negated mean log-probability of the answer.

Output, in `out`: pairs.jsonl (a header, then one record per pair, flushed as it goes: rerun to resume) and
summary.json. Nothing is written before every prompt is checked against the model's context.

Left out on purpose: generated answers (the benchmark, `rheads monitor bench`, judges the model's own) and
labels beyond the pair's own order (no threshold is fitted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ...analysis.stats import bootstrap_ci, paired_diff_ci
from ...config import Config, ModelConfig
from ...io.jsonl import atomic_write_json, read_jsonl
from ...io.rundir import open_run
from ...models.info import model_key, model_meta
from ...probes.haystack import get_haystack
from ...version import FORMAT_VERSION, __version__
from ..monitor import Monitor
from .items import materialize, plan

SIGNALS = ("monitor", "monitor[id]", "copy", "copy[id]", "mean_logprob")


@dataclass
class PairsConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    scores: str = ""
    threshold: float = 0.1
    lengths: list[int] = field(default_factory=lambda: [500])
    depths: list[float] = field(default_factory=lambda: [0, 25, 50, 75, 100])
    haystack: str = "paul-graham"
    template: str = "default"
    chat: bool | None = None
    seed: int = 42


def _sides(rep) -> dict[str, float | None]:
    return {"monitor": rep.hallucination_score, "copy": rep.scores.get("copy"),
            "mean_logprob": rep.baselines.get("mean_logprob"), "verdict": rep.verdict}


def pair_record(item, context_tokens: int, by: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One pairs.jsonl record: {mode: {stated: {...}, common: {...}}} per copy-match mode, and per signal the
    score of each answer (higher = more hallucinated)."""
    out = {"type": "pair", "id": item.id, "length": item.length, "depth": item.depth, "question": item.question,
           "stated": item.gold, "common": item.common, "prompt_tokens": context_tokens, "by": by}
    sig = {}
    for mode, suffix in (("text", ""), ("id", "[id]")):
        for side in ("stated", "common"):
            sig.setdefault(f"monitor{suffix}", {})[side] = by[mode][side]["monitor"]
            sig.setdefault(f"copy{suffix}", {})[side] = by[mode][side]["copy"]
    lp = {side: by["text"][side]["mean_logprob"] for side in ("stated", "common")}
    sig["mean_logprob"] = {side: (None if v is None else -v) for side, v in lp.items()}
    out["signals"] = sig
    return out


def right(rec: dict, signal: str) -> float | None:
    """1 when the signal scores the real-world answer as more hallucinated, 0.5 on a tie, 0 otherwise."""
    s = rec["signals"][signal]
    if s["stated"] is None or s["common"] is None:
        return None
    return 1.0 if s["common"] > s["stated"] else (0.5 if s["common"] == s["stated"] else 0.0)


def summarize(records: list[dict], config: PairsConfig, model) -> dict[str, Any]:
    per = {s: [right(r, s) for r in records] for s in SIGNALS}
    out: dict[str, Any] = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
                           "model": model_meta(model), "n_pairs": len(records), "signals": {}}
    for s, vals in per.items():
        v = [x for x in vals if x is not None]
        out["signals"][s] = {"right": round(float(np.mean(v)), 4) if v else None,
                             "ci95": bootstrap_ci(v), "n": len(v)}
    both = lambda a, b: [(x, y) for x, y in zip(per[a], per[b]) if x is not None and y is not None]  # noqa: E731
    out["diffs"] = {}
    for a, b in (("monitor", "monitor[id]"), ("monitor", "mean_logprob"), ("copy", "copy[id]")):
        pairs = both(a, b)
        x, y = [p[0] for p in pairs], [p[1] for p in pairs]
        out["diffs"][f"{a} - {b}"] = {"diff": round(float(np.mean(x) - np.mean(y)), 4) if pairs else None,
                                      "ci95": paired_diff_ci(x, y), "n": len(pairs)}
    verdicts: dict[str, dict[str, int]] = {}
    for r in records:
        for side in ("stated", "common"):
            v = r["by"]["text"][side]["verdict"]
            verdicts.setdefault(side, {}).setdefault(v, 0)
            verdicts[side][v] += 1
    out["verdicts"] = verdicts
    return out


def format_table(summary: dict) -> str:
    n = summary["n_pairs"]
    lines = [f"{n} pairs: share where the real-world answer scores as more hallucinated than the stated one "
             "[bootstrap 95% CI]", "", "| signal | right [95% CI] |", "|---|---|"]
    for s, v in summary["signals"].items():
        ci = v["ci95"]
        lines.append(f"| {s} | {v['right']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] |" if ci else f"| {s} | {v['right']} |")
    lines += ["", "| paired difference | diff [95% CI] |", "|---|---|"]
    for k, d in summary["diffs"].items():
        ci = d["ci95"]
        lines.append(f"| {k} | {d['diff']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] |" if ci else f"| {k} | {d['diff']} |")
    lines += ["", "verdicts (text matching): " + "; ".join(
        f"{side}: " + ", ".join(f"{k} {c}" for k, c in sorted(v.items())) for side, v in summary["verdicts"].items())]
    return "\n".join(lines)


def run_pairs(model, tokenizer, config: PairsConfig, out: str | Path, *, overwrite: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Score every pair (resuming); write pairs.jsonl and summary.json; returns the summary."""
    items = plan(config.lengths, config.depths, niah_per_cell=0, cf_per_cell=1, seed=config.seed)
    mons = {m: Monitor(model, tokenizer, config.scores, threshold=config.threshold, template=config.template,
                       chat=config.chat, copy_match=m) for m in ("text", "id")}
    hay = get_haystack(config.haystack)
    max_ctx = mons["text"].max_context or None
    contexts = {it.id: materialize(it, tokenizer, hay, config.template, config.chat, max_context=max_ctx)
                for it in items}
    for it in items:  # every prompt is checked before anything is written
        for ans in (it.gold, it.common):
            mons["text"].check(contexts[it.id], it.question, ans)
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "model_key": model_key(model), "model": model_meta(model)}
    done, writer = open_run(out, meta, keys=("config", "model_key"), jsonl="pairs.jsonl", kind="pair",
                            overwrite=overwrite)
    with writer:
        for it in tqdm([i for i in items if i.id not in done], desc="monitor pairs", disable=not progress):
            ctx = contexts[it.id]
            by = {m: {side: _sides(mon.score(ctx, it.question, ans))
                      for side, ans in (("stated", it.gold), ("common", it.common))} for m, mon in mons.items()}
            writer.write(pair_record(it, mons["text"].prompt(ctx, it.question).n, by))
    recs = {r["id"]: r for r in read_jsonl(Path(out) / "pairs.jsonl") if r.get("type") == "pair"}
    summary = summarize([recs[i.id] for i in items], config, model)
    atomic_write_json(Path(out) / "summary.json", summary)
    return summary
