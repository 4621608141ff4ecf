"""Retrieval-head detection: needle-in-a-haystack probes, greedy decoding with top-1 capture, scores.

`detect(model, config, out=..., batch_size=...)` runs every (length, depth, needle) sample of the grid,
`batch_size` prompts at a time (left-padded; grid order keeps equal lengths together): the prompts are
prefilled with SDPA, greedy decoding records each head's top-1 cache slot at every step (`runtime/`), each
row's slots are shifted by its padding, and `scoring.copy.copy_counts` turns them into per-head copies.
Decoding stops at EOS, or at `config.stop` (default: a newline after the answer for plain templates). Each
sample is one JSONL line, flushed at once; a rerun with the same config, model and data skips the samples
already there, so a killed run resumes and ends with the same `scores.json` as an uninterrupted one.

Left out on purpose: sampling (the score is defined on greedy output).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import DetectConfig
from ..errors import RHeadsError
from ..heads.scores import HeadScores, scores_from_records
from ..io.jsonl import atomic_write_json
from ..io.rundir import open_run
from ..models.info import eos_ids, model_dims, model_key, model_meta, model_name
from ..models.loading import load_model
from ..probes.build import build_probe
from ..probes.grid import Sample, check_grid, data_sha, grid
from ..probes.haystack import get_haystack
from ..probes.needles import Needle, get_needles
from ..probes.templates import resolve_template
from ..runtime.attention import check_model
from ..runtime.controller import AttentionController
from ..runtime.decoding import default_stop, generate_batch, pad_id, text_stop
from ..scoring.copy import copy_counts
from ..scoring.rouge import rouge1_recall
from ..version import FORMAT_VERSION, __version__
from ..viz.heads import head_heatmap

def detect(model: Any, config: DetectConfig, *, tokenizer: Any = None, out: str | Path | None = None,
           progress: bool = True, batch_size: int = 1, overwrite: bool = False) -> HeadScores:
    """Score every head of `model` (a loaded model with `tokenizer`, or a model spec string) on the grid.

    With `out`, writes config.json, samples.jsonl (resumable), scores.json (paper format), heatmap.png and
    summary.json there.
    """
    if isinstance(model, str):
        mc = config.model
        model, tokenizer = load_model(model, device=mc.device, dtype=mc.dtype, device_map=mc.device_map)
    if tokenizer is None:
        raise RHeadsError("detect() needs the tokenizer of a loaded model: detect(model, config, tokenizer=tok)")
    check_model(model)
    if batch_size < 1:
        raise RHeadsError(f"--batch-size must be at least 1 (got {batch_size})")
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
                "model": model_meta(model), "model_key": model_key(model),
                "data_sha": data_sha(haystack, needles)}
        done, writer = open_run(out, meta, keys=("config", "model_key", "data_sha"), jsonl="samples.jsonl",
                                kind="sample", defaults={"config": config.defaults()}, overwrite=overwrite)

    stop = text_stop(config.stop if config.stop is not None else default_stop(template))
    todo = [s for s in samples if s.id not in done]
    try:
        bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc="detect", unit="sample",
                   disable=not progress)
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            for rec in run_batch(model, tokenizer, haystack, needles, batch, config, template, eos, stop, max_ctx):
                done[rec["id"]] = rec
                if writer:
                    writer.write(rec)
            bar.update(len(batch))
            bar.set_postfix(counted=sum(r["counted"] for r in done.values()))
        bar.close()
    finally:
        if writer:
            writer.close()

    results = [done[s.id] for s in samples]
    scores = scores_from_records(results, L, H)
    if out is not None:
        write_outputs(out, scores, results, config, model_name=model_name(model))
    return scores


def run_batch(model, tokenizer, haystack: str, needles: list[Needle], samples: list[Sample], config: DetectConfig,
              template, eos: list[int], stop, max_ctx: int) -> list[dict]:
    """Decode the samples' probes together (left-padded) with top-1 capture; one record per sample."""
    p = config.probe
    probes = [build_probe(tokenizer, haystack, needles[s.needle_index], s.length, s.depth, template=template,
                          chat=p.chat, max_context=max_ctx or None) for s in samples]
    t0 = time.perf_counter()
    ctl = AttentionController(capture=True)
    gens = generate_batch(model, [pr.input_ids for pr in probes], config.max_new_tokens, eos, ctl,
                          pad_id(tokenizer, eos), tokenizer=tokenizer, stop=stop)
    seconds = (time.perf_counter() - t0) / len(samples)
    slots = ctl.top1_positions()  # [T, L, B, H] cache slots of the left-padded batch
    width = max(len(pr.input_ids) for pr in probes)
    out = []
    for b, (s, pr, g) in enumerate(zip(samples, probes, gens)):
        gen = torch.tensor(g.tokens, dtype=torch.long)  # [T_b]
        top1 = slots[: len(g.tokens), :, b, :] - (width - len(pr.input_ids))  # [T_b, L, H] row positions
        out.append(sample_record(s, pr, needles[s.needle_index], gen, top1, g.reason, tokenizer, config, seconds))
    return out


def sample_record(s: Sample, probe, needle: Needle, gen: torch.Tensor, top1: torch.Tensor, ended: str, tokenizer,
                  config: DetectConfig, seconds: float) -> dict:
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
        "ended": ended,
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
