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

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cluster.shard import select
from ..config import DetectConfig
from ..errors import RHeadsError
from ..heads.scores import HeadScores, scores_from_records
from ..io.jsonl import atomic_write_json
from ..io.rundir import open_run
from ..models.info import model_key, model_meta, model_name
from ..models.loading import load_model
from ..probes.grid import Sample
from ..probes.needles import Needle
from ..capture.controller import AttentionController
from ..scoring.copy import copy_counts
from ..scoring.rouge import rouge1_recall
from ..version import FORMAT_VERSION, __version__
from ..viz.heads import head_heatmap
from ..evals.grid import Grid, decode, prepare, run_batches


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
    g = prepare(model, tokenizer, config.probe, config.max_new_tokens, config.stop, batch_size)
    select(g.samples, config.shard, cost=lambda s: s.length, key=lambda s: s.id)  # a bad shard before out is touched

    done: dict[str, dict] = {}
    writer = None
    if out is not None:
        out = Path(out)
        meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
                "model": model_meta(model), "model_key": model_key(model), "data_sha": g.data_sha}
        done, writer = open_run(out, meta, keys=("config", "model_key", "data_sha"), jsonl="samples.jsonl",
                                kind="sample", defaults={"config": config.defaults()}, overwrite=overwrite)
    g.samples = select(g.samples, config.shard, cost=lambda s: s.length, key=lambda s: s.id, out=out)
    try:
        results = run_batches(g.samples, done, batch_size,
                              lambda batch: run_batch(model, tokenizer, g, batch, config), writer, "detect",
                              progress, lambda d: {"counted": sum(r["counted"] for r in d.values())})
    finally:
        if writer:
            writer.close()

    scores = scores_from_records(results, g.num_layers, g.num_heads)
    if out is not None:
        write_outputs(out, scores, results, config, model_name=model_name(model))
    return scores


def run_batch(model, tokenizer, g: Grid, samples: list[Sample], config: DetectConfig) -> list[dict]:
    """Decode the samples' probes together (left-padded) with top-1 capture; one record per sample."""
    ctl = AttentionController(capture=True)
    probes, gens, seconds = decode(model, tokenizer, g, samples, config.max_new_tokens, ctl)
    slots = ctl.top1_positions()  # [T, L, B, H] cache slots of the left-padded batch
    width = max(len(pr.input_ids) for pr in probes)
    out = []
    for b, (s, pr, gen) in enumerate(zip(samples, probes, gens)):
        tokens = torch.tensor(gen.tokens, dtype=torch.long)  # [T_b]
        top1 = slots[: len(gen.tokens), :, b, :] - (width - len(pr.input_ids))  # [T_b, L, H] row positions
        out.append(sample_record(s, pr, g.needles[s.needle_index], tokens, top1, gen.reason, tokenizer, config,
                                 seconds))
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


def detection_summary(scores: HeadScores, records: list[dict], threshold: float, top_k: int = 20) -> dict:
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
    summary = detection_summary(scores, records, config.threshold)
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
