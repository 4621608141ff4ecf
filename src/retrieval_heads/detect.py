"""Retrieval-head detection: needle-in-a-haystack probes, greedy decoding with top-1 capture, scores.

`detect(model, config, out=...)` runs every (length, depth, needle) sample of the grid, one at a time:
the prompt is prefilled with SDPA, greedy decoding records each head's top-1 position at every step (see
`attention.py`), and `scoring.copy_counts` turns that into per-head copies. Each sample is one JSONL line,
flushed at once; a rerun with the same config skips the samples already there, so a killed run resumes
and ends with the same `scores.json` as an uninterrupted one.

Left out on purpose: batching several prompts (prompts of different lengths would need padding, and the
per-sample cost is dominated by the prefill anyway) and sampling (the score is defined on greedy output).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .attention import AttentionController, check_model
from .config import DetectConfig
from .errors import RHeadsError
from .generation import Sample, check_grid, eos_ids, greedy, grid, model_dims, model_meta
from .haystack import get_haystack
from .needles import Needle, get_needles
from .prompts import build_probe, resolve_template
from .results import FORMAT_VERSION, HeadScores, atomic_write_json, open_run, scores_from_records
from .scoring import copy_counts, rouge1_recall


def greedy_with_capture(model, input_ids: list[int], max_new_tokens: int, eos_ids: list[int] | None = None):
    """Greedy-decode one prompt with capture on. Returns (generated ids [T], top1 positions [T, L, H])."""
    ctl = AttentionController(capture=True)
    gen = greedy(model, input_ids, max_new_tokens, eos_ids, ctl)  # [T]
    return gen, ctl.top1_positions()[:, :, 0, :]  # [T, L, B=1, H] -> [T, L, H]


def detect(model: Any, config: DetectConfig, *, tokenizer: Any = None, out: str | Path | None = None,
           progress: bool = True) -> HeadScores:
    """Score every head of `model` (a loaded model with `tokenizer`, or a model spec string) on the grid.

    With `out`, writes config.json, samples.jsonl (resumable), scores.json (paper format), heatmap.png and
    summary.json there.
    """
    if isinstance(model, str):
        from .models import load_model

        mc = config.model
        model, tokenizer = load_model(model, device=mc.device, dtype=mc.dtype, device_map=mc.device_map)
    if tokenizer is None:
        raise RHeadsError("detect() needs the tokenizer of a loaded model: detect(model, config, tokenizer=tok)")
    check_model(model)
    p = config.probe
    L, H, max_ctx = model_dims(model)
    check_grid(p, config.max_new_tokens, max_ctx)
    haystack = get_haystack(p.haystack)
    needles = get_needles(p.needles)
    template = resolve_template(p.template, tokenizer, p.chat)
    samples = grid(p, len(needles))
    eos = eos_ids(model, tokenizer)

    done: dict[str, dict] = {}
    writer = None
    if out is not None:
        out = Path(out)
        meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
                "model": model_meta(model)}
        done, writer = open_run(out, meta, keys=("config",), jsonl="samples.jsonl", kind="sample")

    results: list[dict] = []
    try:
        bar = tqdm(samples, desc="detect", unit="sample", disable=not progress)
        for s in bar:
            if s.id in done:
                results.append(done[s.id])
                continue
            rec = run_sample(model, tokenizer, haystack, needles[s.needle_index], s, config, template, eos, max_ctx)
            results.append(rec)
            if writer:
                writer.write(rec)
            bar.set_postfix(counted=sum(r["counted"] for r in results))
    finally:
        if writer:
            writer.close()

    scores = scores_from_records(results, L, H)
    if out is not None:
        write_outputs(out, scores, results, config, model_name=config.model.model)
    return scores


def run_sample(model, tokenizer, haystack: str, needle: Needle, s: Sample, config: DetectConfig, template,
               eos: list[int], max_ctx: int) -> dict:
    p = config.probe
    probe = build_probe(tokenizer, haystack, needle, s.length, s.depth, template=template, chat=p.chat,
                        max_context=max_ctx or None)
    t0 = time.perf_counter()
    gen, top1 = greedy_with_capture(model, probe.input_ids, config.max_new_tokens, eos)
    seconds = time.perf_counter() - t0
    seq = torch.cat([torch.tensor(probe.input_ids), gen])  # [N + T]
    copies = copy_counts(top1, seq, gen, probe.answer_span)  # [L, H]
    response = tokenizer.decode(gen, skip_special_tokens=True).strip()
    recall = rouge1_recall(response, needle.real_needle)
    span_len = probe.answer_span[1] - probe.answer_span[0]
    return {
        "type": "sample",
        "id": s.id,
        "length": s.length,
        "depth": s.depth,
        "actual_depth": probe.actual_depth,
        "prompt_length": probe.length,
        "needle": needle.needle,
        "question": needle.question,
        "real_needle": needle.real_needle,
        "answer_span": list(probe.answer_span),
        "span_len": span_len,
        "response": response,
        "new_tokens": int(gen.numel()),
        "rouge1_recall": recall,
        "counted": recall > config.rouge_threshold,
        "copies": {f"{l}-{h}": int(copies[l, h]) for l, h in zip(*np.nonzero(copies.numpy()))},
        "seconds": round(seconds, 3),
    }


def summarize(scores: HeadScores, records: list[dict], threshold: float, top_k: int = 20) -> dict:
    ranked = scores.ranked()
    above = [lh for lh, s in ranked if s > threshold]
    total = scores.num_layers * scores.num_heads
    return {
        "n_samples": len(records),
        "n_counted": sum(r["counted"] for r in records),
        "n_heads": total,
        "threshold": threshold,
        "n_retrieval_heads": len(above),
        "fraction_retrieval_heads": len(above) / total if total else 0.0,
        "top": [{"head": f"{l}-{h}", "score": round(s, 4)} for (l, h), s in ranked[:top_k]],
        "seconds": round(sum(r.get("seconds", 0.0) for r in records), 1),
    }


def write_outputs(out: Path, scores: HeadScores, records: list[dict], config: DetectConfig, model_name: str) -> dict:
    from .plots import head_heatmap

    scores.save(out / "scores.json")
    summary = summarize(scores, records, config.threshold)
    summary = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(), **summary}
    atomic_write_json(out / "summary.json", summary)
    head_heatmap(scores.mean(), out / "heatmap.png",
                 f"{model_name}: retrieval scores ({summary['n_counted']} counted samples)", config.threshold)
    return summary


def format_summary(summary: dict) -> str:
    lines = [
        f"samples: {summary['n_samples']}, counted (ROUGE-1 recall > 0.5): {summary['n_counted']}",
        f"retrieval heads (score > {summary['threshold']}): {summary['n_retrieval_heads']} of {summary['n_heads']}"
        f" ({100 * summary['fraction_retrieval_heads']:.1f}%)",
        "",
        f"{'rank':>4}  {'head':>7}  {'score':>6}",
    ]
    for i, t in enumerate(summary["top"], 1):
        lines.append(f"{i:>4}  {t['head']:>7}  {t['score']:>6.3f}")
    return "\n".join(lines)
