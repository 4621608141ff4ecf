"""Evaluate a loaded model on a registered task (`tasks.py`), optionally with attention heads masked.

`run_eval(model, tokenizer, config, out)` builds each item's prompt (few-shot, the task's mode), decodes
greedily under `AttentionController(ablate=..., mode=...)` (the mask holds in prefill and in every decoding
step), extracts the answer and scores it. Prompts are decoded in batches of `batch_size`, left-padded with
an attention mask; greedy outputs do not depend on the batch size beyond float noise.

Masks are the specs of `masks.py` (none, top:K, random:K, heads:...), with the same defaults as `niah`
(ablation `zero`, threshold 0.1). For ablation `mean` the reference means come from `collect_means` over the
first `mean_ref_prompts` prompts of the run itself, unmasked (recorded under `mean_reference`).

Outputs in `out`: config.json (the resolved config, the masked heads, a hash of the items), items.jsonl (a
header, then one record per item with the prompt, generation, extracted answer and correctness, flushed per
item: rerunning the same config skips the items already there), summary.json (`accuracy` in [0, 1] and
`n`, plus counts, the mask and the model's shape).

Left out on purpose: sampling and self-consistency (greedy only), stop strings during decoding (a plain
prompt's continuation is cut at the next "Question:" before extraction), and sorting prompts by length.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import __version__
from .attention import AttentionController, check_model, collect_means
from .config import ModelConfig
from .errors import RHeadsError
from .generation import eos_ids, model_dims, model_meta
from .masks import format_heads, resolve_mask, to_ablate
from .results import FORMAT_VERSION, atomic_write_json, open_run
from .tasks import (Item, Prompt, build_prompt, extract, get_task, is_correct, load_exemplars, load_items,
                    resolve_mode, use_chat)


@dataclass
class EvalConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: str = "gsm8k"  # a registered task (`rheads tasks`)
    data: str | None = None  # file tasks: a local JSONL or a hub id; None: the task's default source
    split: str | None = None  # hub datasets: the split (None: the task's default)
    mode: str | None = None  # cot, direct or closedbook; None: the task's default
    limit: int | None = None  # the first N items (generated tasks: N items; None: the task's default)
    shots: int | None = None  # few-shot exemplars; None: the task's default
    fewshot_file: str | None = None  # exemplars from this JSONL (the task's format) instead of inline ones
    steps: int = 3  # generated tasks: operations per item
    seed: int = 0  # generated tasks: the item seed
    chat: bool | None = None  # None: use the chat template when the tokenizer has one
    mask: str = "none"  # none, top:K, random:K, heads:16-19,11-15 (see masks.py)
    scores: str | None = None  # score file for top/random masks
    ablation: str = "zero"  # a mode of attention.ABLATION_MODES (the niah default)
    threshold: float = 0.1  # heads scoring above it form the retrieval set (excluded from random:K)
    mask_seed: int = 0  # seed of the random:K draw
    max_new_tokens: int | None = None  # None: the task's default for the mode
    mean_ref_prompts: int = 8  # ablation mean: the first N prompts of the run give the reference means

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalConfig":
        return cls(model=ModelConfig(**d.get("model", {})),
                   **{f.name: d[f.name] for f in fields(cls) if f.name != "model" and f.name in d})

    def resolved(self) -> "EvalConfig":
        """The config with the task's defaults filled in (mode, shots, max_new_tokens), as the run records it."""
        spec = get_task(self.task)
        mode = resolve_mode(spec, self.mode)
        return replace(self, mode=mode, shots=spec.shots if self.shots is None else self.shots,
                       max_new_tokens=self.max_new_tokens or spec.max_new_tokens[mode])


def items_hash(items: list[Item]) -> str:
    """A short hash of the items (ids, questions, answers): a resumed run must see the same items."""
    blob = json.dumps([[it.id, it.question, list(it.answers)] for it in items], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare(tokenizer, config: EvalConfig) -> tuple[list[Item], list[Prompt]]:
    """The items of a resolved config and their prompts."""
    spec = get_task(config.task)
    items = load_items(spec, config.data, limit=config.limit, steps=config.steps, seed=config.seed, split=config.split)
    shots = load_exemplars(spec, config.shots or 0, config.fewshot_file, steps=config.steps, seed=config.seed)
    chat = use_chat(tokenizer, config.chat)
    return items, [build_prompt(tokenizer, it, config.mode, shots, chat) for it in items]


def pad_id(tokenizer, eos: list[int]) -> int:
    pid = getattr(tokenizer, "pad_token_id", None)
    return int(pid) if pid is not None else (eos[0] if eos else 0)


def generate_batch(model, prompts: list[list[int]], max_new_tokens: int, eos: list[int], ctl: AttentionController,
                   pad: int) -> list[list[int]]:
    """Greedy-decode prompts together (left-padded, masked) with `ctl` active. Returns each prompt's new
    tokens, up to and including its first EOS."""
    B, width = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, width), pad, dtype=torch.long)  # [B, W] left-padded
    mask = torch.zeros((B, width), dtype=torch.long)  # [B, W] 1 = real token
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    with ctl.activate(), torch.no_grad():
        seq = model.generate(ids.to(model.device), attention_mask=mask.to(model.device), max_new_tokens=max_new_tokens,
                             do_sample=False, temperature=None, top_p=None, top_k=None, eos_token_id=eos or None,
                             pad_token_id=pad)
    gen = seq[:, width:].cpu().tolist()  # [B, T]
    stop = set(eos)
    out = []
    for row in gen:
        cut = next((t + 1 for t, tok in enumerate(row) if tok in stop), len(row))
        out.append(row[:cut])
    return out


def default_batch_size(model) -> int:
    return 8 if next(model.parameters()).device.type == "cuda" else 4


def run_eval(model, tokenizer, config: EvalConfig, out: str | Path | None = None, *, batch_size: int | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Evaluate `config` on a loaded model; returns the summary (also written to out/summary.json)."""
    check_model(model)
    config = config.resolved()
    spec = get_task(config.task)
    mode = config.mode
    assert mode is not None and config.max_new_tokens is not None
    batch_size = batch_size or default_batch_size(model)
    if batch_size < 1:
        raise RHeadsError(f"--batch-size must be at least 1 (got {batch_size})")
    L, H, max_ctx = model_dims(model)
    heads = resolve_mask(config.mask, config.scores, L, H, threshold=config.threshold, seed=config.mask_seed)
    ctl = AttentionController(ablate=to_ablate(heads), mode=config.ablation)  # validates the mode
    items, prompts = prepare(tokenizer, config)
    longest = max(len(p.input_ids) for p in prompts)
    if max_ctx and longest + config.max_new_tokens > max_ctx:
        raise RHeadsError(f"the longest prompt ({longest} tokens) + {config.max_new_tokens} new tokens exceeds the "
                          f"model's context of {max_ctx}: use fewer --shots or a smaller --max-new-tokens")
    eos = eos_ids(model, tokenizer)
    pad = pad_id(tokenizer, eos)
    mean_info = None
    if config.ablation == "mean" and heads:
        mean_info = {"source": "collect_means over the first prompts of this run, unmasked",
                     "n_prompts": min(len(prompts), max(1, config.mean_ref_prompts))}
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "masked_heads": format_heads(heads), "items_sha": items_hash(items), "n_items": len(items),
            "model": model_meta(model), "mean_reference": mean_info}

    done: dict[str, dict] = {}
    writer = None
    if out is not None:
        out = Path(out)
        done, writer = open_run(out, meta, keys=("config", "masked_heads", "items_sha"), jsonl="items.jsonl",
                                kind="item")

    todo = [i for i, it in enumerate(items) if it.id not in done]
    try:
        if mean_info and todo:
            refs = [torch.tensor([p.input_ids]) for p in prompts[: mean_info["n_prompts"]]]
            ctl.means = collect_means(model, refs)  # layer -> [H, D]
        bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="item", disable=not progress,
                   desc=f"{config.task} {mode} {config.mask}")
        for s in range(0, len(todo), batch_size):
            batch = todo[s : s + batch_size]
            t0 = time.perf_counter()
            gens = generate_batch(model, [prompts[i].input_ids for i in batch], config.max_new_tokens, eos, ctl, pad)
            seconds = (time.perf_counter() - t0) / len(batch)
            for i, gen in zip(batch, gens):
                rec = item_record(spec, mode, items[i], i, prompts[i], tokenizer.decode(gen, skip_special_tokens=True),
                                  len(gen), seconds)
                done[rec["id"]] = rec
                if writer:
                    writer.write(rec)
            bar.update(len(batch))
            n_ok = sum(done[it.id]["correct"] for it in items if it.id in done)
            bar.set_postfix(acc=f"{n_ok / max(1, len(done)):.3f}")
        bar.close()
    finally:
        if writer:
            writer.close()

    results = [done[it.id] for it in items]
    summary = summarize(results, config, heads, mean_info, model, batch_size)
    if out is not None:
        atomic_write_json(out / "summary.json", summary)
    return summary


def item_record(spec, mode: str, item: Item, index: int, prompt: Prompt, generation: str, new_tokens: int,
                seconds: float) -> dict[str, Any]:
    generation = generation.strip()
    extracted = extract(spec, generation, mode)
    return {"type": "item", "id": item.id, "index": index, "question": item.question, "answers": list(item.answers),
            "prompt": prompt.text, "prompt_tokens": len(prompt.input_ids), "generation": generation,
            "extracted": extracted, "correct": bool(is_correct(spec, extracted, item)), "new_tokens": new_tokens,
            "seconds": round(seconds, 3)}


def summarize(records: list[dict], config: EvalConfig, heads: list[tuple[int, int]], mean_info: dict | None,
              model=None, batch_size: int | None = None) -> dict[str, Any]:
    """summary.json: accuracy (fraction correct) over n items, and what was run."""
    n = len(records)
    n_ok = sum(r["correct"] for r in records)
    return {
        "version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
        "model": model_meta(model) if model is not None else None,
        "task": config.task, "mode": config.mode, "mask": config.mask,
        "ablation": config.ablation if heads else None, "masked_heads": format_heads(heads), "n_masked": len(heads),
        "mean_reference": mean_info,
        "accuracy": round(n_ok / n, 6) if n else 0.0, "n": n, "n_correct": n_ok,
        "n_no_answer": sum(r["extracted"] is None for r in records),
        "mean_new_tokens": round(sum(r["new_tokens"] for r in records) / n, 2) if n else 0.0,
        "batch_size": batch_size, "seconds": round(sum(r.get("seconds", 0.0) for r in records), 1),
    }


def format_summary(summary: dict) -> str:
    masked = f"{summary['n_masked']} heads masked ({summary['ablation']})" if summary["n_masked"] else "no heads masked"
    return (f"{summary['task']} ({summary['mode']}), mask {summary['mask']}, {masked}: accuracy "
            f"{summary['accuracy']:.3f} ({summary['n_correct']}/{summary['n']}), no answer {summary['n_no_answer']}, "
            f"{summary['mean_new_tokens']:.0f} new tokens per item")
