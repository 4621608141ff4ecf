"""Needle-in-a-haystack evaluation, optionally with attention heads masked: the causal test.

`run_niah(model, tokenizer, config, out)` runs a lengths x depths grid on a loaded model (so one load can
serve many runs, as `ablate.py` does). Each sample is a probe from `prompts.build_probe` with a needle of
the `eval` set by default (disjoint from the `detect` set used to find the heads), greedily decoded under
`AttentionController(ablate=..., mode=...)` so the mask holds in prefill and in every decoding step.

Each response is judged by `scoring.judge` (ROUGE-1 recall x100, containment, response class); a resumed
run judges its stored responses again, so a changed judge never mixes with an old one.

Outputs in `out`: config.json, samples.jsonl (one record per sample, flushed; a rerun with the same
config skips the samples already there), summary.json (`mean_score` 0-100, `n_cells`, `classes` counts,
per-length/depth means), heatmap.png (depth x length, 0-100, red to green) and classes.png.

For mode `mean` the reference means come from `collect_means` on a few plain haystack windows (no
template, no needle, not the eval prompts); how is recorded under `mean_reference`.

Samples are decoded `batch_size` at a time, left-padded (grid order keeps equal lengths together).

`kv` (a `kvcache.KVConfig`: policy, sink, recent, threshold, top, seed, prefill, prefill_chunk) picks the KV
cache (any registered policy: `kvcache.policy_names()`); each record and summary.json gain `kv_bytes` (the most
the cache held) and `kv_bytes_full` (what the full cache holds for the same prompts), the summary `kv_policy`
(and the window and selection of a compressing policy). Run files that stored the KV fields flat (`kv`,
`kv_sink`, ...) are read, and resume, as the same config (`NiahConfig.from_dict`, `kvcache/config.py`).

`shard` ("i/n") runs the i-th of n cost-balanced parts of the samples (`cluster/shard.py`); `rheads merge`
combines the parts.

Left out on purpose: sampling (greedy only),
LLM-judged scoring, and checking whether a hallucination is copied from the haystack.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.stats import bootstrap_ci
from ..cluster.shard import select
from ..config import Config, ModelConfig, ProbeConfig
from ..errors import RHeadsError
from ..atlas.match import check_model as check_atlas_model
from ..heads.masks import format_heads, resolve_mask, to_ablate
from ..io.jsonl import atomic_write_json
from ..io.rundir import open_run
from ..models.info import model_key, model_meta, model_name
from ..probes.grid import Sample
from ..capture.controller import AttentionController
from ..kvcache.config import KVConfig, nest_kv, upgrade_stored_config
from ..kvcache.factory import kv_factory, kv_summary
from ..scoring.judge import RESPONSE_CLASSES, judge
from ..version import FORMAT_VERSION, __version__
from ..viz.niah import class_mix_plot, niah_heatmap
from .grid import Grid, decode, prepare, run_batches
from ..studies.means import MeanReference, mean_reference, mean_reference_info


def niah_probe() -> ProbeConfig:
    return ProbeConfig(needles="eval", lengths=[1000, 2000, 3000, 4000], depths=[0, 25, 50, 75, 100],
                       needles_per_cell=1)


@dataclass
class NiahConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    probe: ProbeConfig = field(default_factory=niah_probe)
    mask: str = "none"  # none, top:K, random:K, heads:16-19,11-15 (see masks.py)
    scores: str | None = None  # score file for top/random masks (scores.json or the paper's)
    ablation: str = "zero"  # a mode of attention.ABLATION_MODES
    threshold: float = 0.1  # heads scoring above it form the retrieval set (excluded from random:K)
    mask_seed: int = 0  # seed of the random:K draw
    max_new_tokens: int = 32
    stop: list[str] | None = None  # stop strings; None: a newline after the answer for plain templates, none in chat
    mean_ref_prompts: int = 4  # mode mean: haystack windows the reference means are taken over
    mean_ref_length: int = 1000  # tokens per window (capped by the model's context)
    kv: KVConfig = field(default_factory=KVConfig)  # the KV cache (kvcache/config.py); default: the full cache
    lengths_only: list[int] | None = None  # run only these lengths of the probe's grid, with the whole grid's needles
    shard: str | None = None  # "i/n": only the i-th of n cost-balanced parts of the samples (cluster/shard.py)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NiahConfig":
        """Also reads configs that stored the KV fields flat (kv, kv_sink, ..., prefill_chunk)."""
        return super().from_dict(nest_kv(d))


def run_niah(model, tokenizer, config: NiahConfig, out: str | Path | None = None, progress: bool = True,
             means: MeanReference | None = None, overwrite: bool = False, batch_size: int = 1) -> dict[str, Any]:
    """Run the NIAH grid of `config` on a loaded model; returns the summary (also written to out/summary.json).

    `means` (mode mean only) reuses reference means computed once, e.g. by `ablate.run_ablate`.
    """
    g = prepare(model, tokenizer, config.probe, config.max_new_tokens, config.stop, batch_size)
    if config.lengths_only is not None:  # a part of the grid: each sample keeps the needle the whole grid gives it
        bad = sorted(set(config.lengths_only) - set(config.probe.lengths))
        if bad or not config.lengths_only:
            raise RHeadsError(f"lengths_only {config.lengths_only}: pick some of the grid's lengths "
                              f"{config.probe.lengths}")
        g.samples = [s for s in g.samples if s.length in config.lengths_only]
    select(g.samples, config.shard, cost=lambda s: s.length, key=lambda s: s.id)  # a bad shard before out is touched
    L, H, max_ctx = g.num_layers, g.num_heads, g.max_ctx
    if config.scores:
        check_atlas_model(config.scores, model)  # other dimensions refused, other weights warned
    heads = resolve_mask(config.mask, config.scores, L, H, threshold=config.threshold, seed=config.mask_seed)
    ctl = AttentionController(ablate=to_ablate(heads), mode=config.ablation)  # validates the mode
    cache = kv_factory(config.kv, model, config.scores, masked=bool(heads))  # fails on a bad policy, scores, model
    mean_info, windows = None, None
    if config.ablation == "mean" and heads:
        if means is None:
            windows, mean_info = mean_reference_info(tokenizer, config.probe.haystack, config.mean_ref_prompts,
                                                      config.mean_ref_length, max_ctx)
        else:
            mean_info = means.info
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "masked_heads": format_heads(heads), "model": model_meta(model), "model_key": model_key(model),
            "data_sha": g.data_sha, "mean_reference": mean_info}

    done: dict[str, dict] = {}
    writer = None
    if out is not None:
        out = Path(out)
        upgrade_stored_config(out, nest_kv)  # a run dir written with flat KV fields resumes as the same run
        done, writer = open_run(out, meta, keys=("config", "masked_heads", "model_key", "data_sha"),
                                jsonl="samples.jsonl", kind="sample", defaults={"config": config.defaults()},
                                overwrite=overwrite)
    g.samples = select(g.samples, config.shard, cost=lambda s: s.length, key=lambda s: s.id, out=out)

    try:
        if config.ablation == "mean" and heads and any(s.id not in done for s in g.samples):
            ctl.means = means.means if means is not None else \
                mean_reference(model, windows, mean_info).means  # layer -> [H, D]
        for sid, rec in done.items():  # judged again: the judge may have changed since the sample was decoded
            done[sid] = {**rec, **judge(rec["response"], rec["answer"])}
        results = run_batches(g.samples, done, batch_size,
                              lambda batch: run_batch(model, tokenizer, g, batch, config, ctl, cache), writer,
                              f"niah {config.mask}", progress,
                              lambda d: {"mean": f"{np.mean([r['score'] for r in d.values()]):.1f}"})
    finally:
        if writer:
            writer.close()

    summary = niah_summary(results, config, heads, mean_info, model, cache)
    if out is not None:
        atomic_write_json(out / "summary.json", summary)
        title = f"{model_name(model)}: NIAH, mask {config.mask}" + (f" ({config.ablation})" if heads else "")
        kv = config.kv
        if cache.policy.compresses:
            title += f", KV {kv.policy} (sink {kv.sink}, recent {kv.recent}, {kv.prefill} prefill)"
        niah_heatmap(results, out / "heatmap.png", f"{title}\nmean score {summary['mean_score']:.1f}")
        class_mix_plot(results, out / "classes.png", title)
    return summary


def run_batch(model, tokenizer, g: Grid, samples: list[Sample], config: NiahConfig, ctl: AttentionController,
              cache=None) -> list[dict[str, Any]]:
    """Decode the samples' probes together (left-padded); one judged record per sample."""
    probes, gens, seconds = decode(model, tokenizer, g, samples, config.max_new_tokens, ctl, cache,
                                   config.kv.prefill_chunk)
    kv = cache.usage(model, len(samples)) if cache is not None else {}
    out = []
    for s, probe, gen in zip(samples, probes, gens):
        needle = g.needles[s.needle_index]
        response = tokenizer.decode(gen.tokens, skip_special_tokens=True).strip()
        out.append({"type": "sample", "id": s.id, "length": s.length, "depth": s.depth, "needle_index": s.needle_index,
                    "actual_depth": probe.actual_depth, "prompt_length": probe.length, "question": needle.question,
                    "answer": needle.real_needle, "response": response, "new_tokens": len(gen.tokens),
                    "ended": gen.reason, **judge(response, needle.real_needle), "seconds": round(seconds, 3), **kv})
    return out


def niah_summary(records: list[dict], config: NiahConfig, heads: list[tuple[int, int]], mean_info: dict | None,
              model=None, cache=None) -> dict[str, Any]:
    """summary.json: mean score (0-100), cells, class counts, per-length and per-depth means; the KV keys of
    `kvcache.factory.kv_summary` (`cache`: the run's cache factory)."""
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
        "ci95": bootstrap_ci(scores), "sample_scores": scores,
        "n_cells": len(cells), "n_samples": len(records),
        "classes": {c: counts.get(c, 0) for c in RESPONSE_CLASSES},
        "contains_rate": round(100.0 * float(np.mean([r["contains"] for r in records])), 2) if records else 0.0,
        "per_length": means_by("length"), "per_depth": means_by("depth"),
        "cells": [{"length": l, "depth": d, "score": round(float(np.mean(v)), 2)} for (l, d), v in cells.items()],
        "seconds": round(sum(r.get("seconds", 0.0) for r in records), 1),
        **kv_summary(records, config.kv, model, cache),
    }


def format_summary(summary: dict) -> str:
    """A text depth x length table, the mean, and the response-class counts."""
    cells = {(c["length"], c["depth"]): c["score"] for c in summary["cells"]}
    lengths = sorted({l for l, _ in cells})
    depths = sorted({d for _, d in cells})
    lines = [f"mask {summary['mask']} ({summary['n_masked']} heads"
             + (f", {summary['ablation']})" if summary["ablation"] else ")")
             + f": mean score {summary['mean_score']:.1f}"
             + (f" [95% CI {summary['ci95'][0]:.1f}, {summary['ci95'][1]:.1f}]" if summary.get("ci95") else "")
             + f" over {summary['n_cells']} cells", "",
             "depth\\len " + "".join(f"{l:>7}" for l in lengths)]
    for d in depths:
        lines.append(f"{d:>9g} " + "".join(f"{cells[(l, d)]:>7.0f}" if (l, d) in cells else f"{'-':>7}" for l in lengths))
    lines.append("")
    lines.append("classes: " + ", ".join(f"{c} {n}" for c, n in summary["classes"].items()))
    return "\n".join(lines)
