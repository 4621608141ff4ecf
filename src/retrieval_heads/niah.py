"""Needle-in-a-haystack evaluation, optionally with attention heads masked: the causal test.

`run_niah(model, tokenizer, config, out)` runs a lengths x depths grid on a loaded model (so one load can
serve many runs, as `ablate.py` does). Each sample is a probe from `prompts.build_probe` with a needle of
the `eval` set by default (disjoint from the `detect` set used to find the heads), greedily decoded under
`AttentionController(ablate=..., mode=...)` so the mask holds in prefill and in every decoding step.

Scoring is deterministic:
- `score`: ROUGE-1 recall of the answer (`real_needle`) in the response, x100, as in Wu et al. 2024;
- `contains`: the answer appears in the response, case- and punctuation-insensitive, on word boundaries;
- `class`: one of RESPONSE_CLASSES, decided in this order (first match wins):
  1. refusal     - empty after stripping (refusal/empty);
  2. correct     - `contains`, or recall >= 0.99;
  3. degenerate  - repetition: no word characters at all, or one n-gram (n=1..4) repeated (>= 4 times for
                   n=1, >= 3 for n>=2) covering at least half of the words, or < 30% distinct words in 12+;
  4. refusal     - a refusal phrase ("I don't know", "not mentioned", "no information", "cannot", ...);
  5. partial     - shares at least one content word (not a stopword) with the answer;
  6. hallucinated - a non-empty, non-repetitive, non-refusing answer sharing no content word with the
                   answer. "Fluent" is checked only as "not degenerate"; whether the wrong answer was copied
                   from elsewhere in the haystack is not checked.
  Content words, not ROUGE tokens, separate partial from hallucinated, so that "a" or "the" shared with
  the answer does not make a made-up answer partial; the cell score stays the paper's ROUGE-1 recall.

Outputs in `out`: config.json, samples.jsonl (one record per sample, flushed; a rerun with the same
config skips the samples already there), summary.json (`mean_score` 0-100, `n_cells`, `classes` counts,
per-length/depth means), heatmap.png (depth x length, 0-100, red to green) and classes.png.

For mode `mean` the reference means come from `collect_means` on a few plain haystack windows (no
template, no needle, not the eval prompts); how is recorded under `mean_reference`.

Left out on purpose: batching (prompts differ in length; the prefill dominates), sampling (greedy only),
LLM-judged scoring, and checking whether a hallucination is copied from the haystack.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .attention import AttentionController, check_model, collect_means
from .config import ModelConfig, ProbeConfig, RunConfig
from .generation import Sample, check_grid, eos_ids, greedy, grid, model_dims, model_meta
from .haystack import get_haystack
from .masks import format_heads, resolve_mask, to_ablate
from .needles import Needle, get_needles
from .plots import pyplot, save_figure
from .prompts import build_probe, resolve_template
from .results import FORMAT_VERSION, atomic_write_json, open_run
from .scoring import rouge1_recall

RESPONSE_CLASSES = ("correct", "partial", "hallucinated", "refusal", "degenerate")
CLASS_COLORS = {"correct": "#1a9850", "partial": "#fee08b", "hallucinated": "#d73027", "refusal": "#74add1",
                "degenerate": "#8c8c8c"}


def _niah_probe() -> ProbeConfig:
    return ProbeConfig(needles="eval", lengths=[1000, 2000, 3000, 4000], depths=[0, 25, 50, 75, 100],
                       needles_per_cell=1)


@dataclass
class NiahConfig(RunConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    probe: ProbeConfig = field(default_factory=_niah_probe)
    mask: str = "none"  # none, top:K, random:K, heads:16-19,11-15 (see masks.py)
    scores: str | None = None  # score file for top/random masks (scores.json or the paper's)
    ablation: str = "zero"  # a mode of attention.ABLATION_MODES
    threshold: float = 0.1  # heads scoring above it form the retrieval set (excluded from random:K)
    mask_seed: int = 0  # seed of the random:K draw
    max_new_tokens: int = 32
    mean_ref_prompts: int = 4  # mode mean: haystack windows the reference means are taken over
    mean_ref_length: int = 1000  # tokens per window (capped by the model's context)



# ---------------------------------------------------------------------------------------- scoring

_WORD = re.compile(r"\w+")
_REFUSAL = re.compile(
    r"\b(i don'?t know|i do not know|not mentioned|no information|cannot|can'?t|can not|unable to|no mention|"
    r"not (?:provided|specified|stated|given|available|sure)|not enough information|"
    r"(?:does|did)(?: not|n'?t) (?:say|mention|provide|contain|specify|state|include)|"
    r"there is no (?:information|mention)|i'?m sorry|i am sorry|unknown)\b"
)
_STOPWORDS = frozenset(
    "a an the of to in on at by for from with about as is are was were be been it its this that these those "
    "and or but if so than then there their they he she his her him we our you your i my me".split()
)


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower().replace("_", " ")))


def contains_answer(response: str, answer: str) -> bool:
    """The answer's words appear, in order and adjacent, in the response (case/punctuation-insensitive)."""
    a = _norm(answer)
    return bool(a) and f" {a} " in f" {_norm(response)} "


def is_degenerate(response: str) -> bool:
    """Repetition: see the module docstring for the exact rule."""
    words = _WORD.findall(response.lower())
    n = len(words)
    if n == 0:
        return bool(response.strip())  # only punctuation or symbols
    for g in range(1, 5):
        if n < 2 * g + 2 or (g == 1 and n < 6):
            continue
        c = Counter(tuple(words[i : i + g]) for i in range(n - g + 1)).most_common(1)[0][1]
        if c >= (4 if g == 1 else 3) and c * g >= 0.5 * n:
            return True
    return n >= 12 and len(set(words)) / n < 0.3


def is_refusal(response: str) -> bool:
    text = response.strip().lower().replace("\u2019", "'")
    return not text or bool(_REFUSAL.search(text))


def response_class(response: str, answer: str, recall: float, contains: bool) -> str:
    """One of RESPONSE_CLASSES (rules in the module docstring)."""
    if not response.strip():
        return "refusal"
    if contains or recall >= 0.99:
        return "correct"
    if is_degenerate(response):
        return "degenerate"
    if is_refusal(response):
        return "refusal"
    content = {w for w in _WORD.findall(answer.lower()) if w not in _STOPWORDS} or set(_WORD.findall(answer.lower()))
    if content & set(_WORD.findall(response.lower())):
        return "partial"
    return "hallucinated"


def judge(response: str, answer: str) -> dict[str, Any]:
    """{"score" 0-100, "rouge1_recall", "contains", "class"} of one response against the answer."""
    recall = rouge1_recall(response, answer) if response.strip() else 0.0
    contains = contains_answer(response, answer)
    return {"score": round(100.0 * recall, 4), "rouge1_recall": recall, "contains": contains,
            "class": response_class(response, answer, recall, contains)}


@dataclass
class MeanReference:
    """Per-layer [H, D] mean head outputs for mode `mean`, and how they were obtained."""

    means: dict[int, torch.Tensor]
    info: dict[str, Any]


def mean_reference_info(tokenizer, config: NiahConfig, max_ctx: int) -> tuple[list[list[int]], dict[str, Any]]:
    """Token windows of the plain haystack (no template, no needle) for the reference means, and their record."""
    p = config.probe
    length = min(config.mean_ref_length, max_ctx or config.mean_ref_length)
    n = max(1, config.mean_ref_prompts)
    ids = tokenizer(get_haystack(p.haystack), add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    body = length - len(bos)
    while len(ids) < body * 2:
        ids = ids + ids
    span = len(ids) - body
    starts = [i * span // max(1, n - 1) if n > 1 else 0 for i in range(n)]
    windows = [bos + ids[s : s + body] for s in starts]
    info = {"source": "collect_means over plain haystack windows (no template, no needle)",
            "haystack": p.haystack, "n_prompts": n, "length": length, "token_starts": starts}
    return windows, info


def mean_reference(model, tokenizer, config: NiahConfig) -> MeanReference:
    """Reference means for mode `mean` (see `mean_reference_info` for the prompts used)."""
    windows, info = mean_reference_info(tokenizer, config, model_dims(model)[2])
    means = collect_means(model, [torch.tensor([w]) for w in windows])  # layer -> [H, D]
    return MeanReference(means, info)


# ---------------------------------------------------------------------------------------- the run


def run_niah(model, tokenizer, config: NiahConfig, out: str | Path | None = None, progress: bool = True,
             means: MeanReference | None = None) -> dict[str, Any]:
    """Run the NIAH grid of `config` on a loaded model; returns the summary (also written to out/summary.json).

    `means` (mode mean only) reuses reference means computed once, e.g. by `ablate.run_ablate`.
    """
    check_model(model)
    p = config.probe
    L, H, max_ctx = model_dims(model)
    check_grid(p, config.max_new_tokens, max_ctx)
    heads = resolve_mask(config.mask, config.scores, L, H, threshold=config.threshold, seed=config.mask_seed)
    ctl = AttentionController(ablate=to_ablate(heads), mode=config.ablation)  # validates the mode
    mean_info, windows = None, None
    if config.ablation == "mean" and heads:
        if means is None:
            windows, mean_info = mean_reference_info(tokenizer, config, max_ctx)
        else:
            mean_info = means.info
    haystack = get_haystack(p.haystack)
    needles = get_needles(p.needles)
    template = resolve_template(p.template, tokenizer, p.chat)
    samples = grid(p, len(needles))
    eos = eos_ids(model, tokenizer)
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "masked_heads": format_heads(heads), "model": model_meta(model), "mean_reference": mean_info}

    done: dict[str, dict] = {}
    writer = None
    if out is not None:
        out = Path(out)
        done, writer = open_run(out, meta, keys=("config", "masked_heads"), jsonl="samples.jsonl", kind="sample")

    results: list[dict] = []
    try:
        if config.ablation == "mean" and heads and any(s.id not in done for s in samples):
            ctl.means = means.means if means is not None else \
                collect_means(model, [torch.tensor([w]) for w in windows])  # layer -> [H, D]
        bar = tqdm(samples, desc=f"niah {config.mask}", unit="sample", disable=not progress)
        for s in bar:
            rec = done.get(s.id)
            if rec is None:
                rec = run_sample(model, tokenizer, haystack, needles[s.needle_index], s, config, template, eos, ctl,
                                 max_ctx)
                if writer:
                    writer.write(rec)
            results.append(rec)
            bar.set_postfix(mean=f"{np.mean([r['score'] for r in results]):.1f}")
    finally:
        if writer:
            writer.close()

    summary = summarize(results, config, heads, mean_info, model)
    if out is not None:
        atomic_write_json(out / "summary.json", summary)
        title = f"{config.model.model}: NIAH, mask {config.mask}" + (f" ({config.ablation})" if heads else "")
        niah_heatmap(results, out / "heatmap.png", f"{title}\nmean score {summary['mean_score']:.1f}")
        class_mix_plot(results, out / "classes.png", title)
    return summary


def run_sample(model, tokenizer, haystack: str, needle: Needle, s: Sample, config: NiahConfig, template,
               eos: list[int], ctl: AttentionController, max_ctx: int) -> dict[str, Any]:
    probe = build_probe(tokenizer, haystack, needle, s.length, s.depth, template=template, chat=config.probe.chat,
                        max_context=max_ctx or None)
    t0 = time.perf_counter()
    gen = greedy(model, probe.input_ids, config.max_new_tokens, eos, ctl)
    seconds = time.perf_counter() - t0
    response = tokenizer.decode(gen, skip_special_tokens=True).strip()
    return {"type": "sample", "id": s.id, "length": s.length, "depth": s.depth, "needle_index": s.needle_index,
            "actual_depth": probe.actual_depth, "prompt_length": probe.length, "question": needle.question,
            "answer": needle.real_needle, "response": response, "new_tokens": int(gen.numel()),
            **judge(response, needle.real_needle), "seconds": round(seconds, 3)}


def summarize(records: list[dict], config: NiahConfig, heads: list[tuple[int, int]], mean_info: dict | None,
              model=None) -> dict[str, Any]:
    """summary.json: mean score (0-100), cells, class counts, per-length and per-depth means."""
    scores = [r["score"] for r in records]
    counts = Counter(r["class"] for r in records)
    cells: dict[tuple[int, float], list[float]] = {}
    for r in records:
        cells.setdefault((r["length"], r["depth"]), []).append(r["score"])

    def means_by(key: str) -> dict[str, float]:
        groups: dict[Any, list[float]] = {}
        for r in records:
            groups.setdefault(r[key], []).append(r["score"])
        return {f"{k:g}": round(float(np.mean(v)), 2) for k, v in groups.items()}

    return {
        "version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
        "model": model_meta(model) if model is not None else None,
        "mask": config.mask, "ablation": config.ablation if heads else None,
        "masked_heads": format_heads(heads), "n_masked": len(heads), "mean_reference": mean_info,
        "mean_score": round(float(np.mean(scores)), 4) if scores else 0.0,
        "n_cells": len(cells), "n_samples": len(records),
        "classes": {c: counts.get(c, 0) for c in RESPONSE_CLASSES},
        "contains_rate": round(100.0 * float(np.mean([r["contains"] for r in records])), 2) if records else 0.0,
        "per_length": means_by("length"), "per_depth": means_by("depth"),
        "cells": [{"length": l, "depth": d, "score": round(float(np.mean(v)), 2)} for (l, d), v in cells.items()],
        "seconds": round(sum(r.get("seconds", 0.0) for r in records), 1),
    }


def format_summary(summary: dict) -> str:
    """A text depth x length table, the mean, and the response-class counts."""
    cells = {(c["length"], c["depth"]): c["score"] for c in summary["cells"]}
    lengths = sorted({l for l, _ in cells})
    depths = sorted({d for _, d in cells})
    lines = [f"mask {summary['mask']} ({summary['n_masked']} heads"
             + (f", {summary['ablation']})" if summary["ablation"] else ")")
             + f": mean score {summary['mean_score']:.1f} over {summary['n_cells']} cells", "",
             "depth\\len " + "".join(f"{l:>7}" for l in lengths)]
    for d in depths:
        lines.append(f"{d:>9g} " + "".join(f"{cells[(l, d)]:>7.0f}" if (l, d) in cells else f"{'-':>7}" for l in lengths))
    lines.append("")
    lines.append("classes: " + ", ".join(f"{c} {n}" for c, n in summary["classes"].items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- figures


def niah_heatmap(records: list[dict], path: str | Path, title: str) -> Path:
    """The classic NIAH plot: x = context length, y = depth percent (0 at top), score 0-100 red to green."""
    plt = pyplot()
    lengths = sorted({r["length"] for r in records})
    depths = sorted({r["depth"] for r in records})
    grid = np.full((len(depths), len(lengths)), np.nan)  # [depths, lengths]
    for i, d in enumerate(depths):
        for j, l in enumerate(lengths):
            v = [r["score"] for r in records if r["length"] == l and r["depth"] == d]
            if v:
                grid[i, j] = float(np.mean(v))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(lengths) + 3), max(3.5, 0.4 * len(depths) + 2)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    if grid.size <= 400:
        for i in range(len(depths)):
            for j in range(len(lengths)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(lengths)), [str(l) for l in lengths], rotation=45 if len(lengths) > 8 else 0)
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("depth percent")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="score (ROUGE-1 recall x100)")
    return save_figure(fig, path)


def stacked_classes(ax, labels: list[str], counts: list[dict[str, int]]) -> None:
    """Stacked bars of response-class fractions, one bar per label."""
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    totals = np.array([max(1, sum(c.values())) for c in counts], dtype=float)
    for cls in RESPONSE_CLASSES:
        frac = np.array([c.get(cls, 0) for c in counts]) / totals
        ax.bar(x, frac, bottom=bottom, color=CLASS_COLORS[cls], label=cls, edgecolor="white", lw=0.5)
        bottom += frac
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of responses")


def class_mix_plot(records: list[dict], path: str | Path, title: str) -> Path:
    """Response-class mix per context length, and over all samples."""
    plt = pyplot()
    lengths = sorted({r["length"] for r in records})
    labels = [str(l) for l in lengths] + ["all"]
    counts = [Counter(r["class"] for r in records if r["length"] == l) for l in lengths]
    counts.append(Counter(r["class"] for r in records))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(labels) + 3), 3.8))
    stacked_classes(ax, labels, [dict(c) for c in counts])
    ax.set_xlabel("context length (tokens)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return save_figure(fig, path)
