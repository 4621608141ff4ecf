"""Evaluate a loaded model on a registered task (`tasks/`), optionally with attention heads masked.

`run_eval(model, tokenizer, config, out)` builds each item's prompt (few-shot, the task's mode), decodes
greedily under `AttentionController(ablate=..., mode=...)` (the mask holds in prefill and in every decoding
step), extracts the answer and scores it. Prompts are decoded in batches of `batch_size`, left-padded with
an attention mask; greedy outputs do not depend on the batch size beyond float noise.

Masks are the specs of `heads/masks.py` (none, top:K, random:K, heads:...), with the same defaults as `niah`
(ablation `zero`, threshold 0.1). For ablation `mean` the reference means come from `collect_means` over the
first `mean_ref_prompts` prompts of the run itself, unmasked (recorded under `mean_reference`).

Outputs in `out`: config.json (the resolved config, the masked heads, a hash of the items), items.jsonl (a
header, then one record per item with the prompt, generation, extracted answer and correctness, flushed per
item: rerunning the same config skips the items already there), summary.json (`accuracy` in [0, 1] and
`n`, plus counts, the mask and the model's shape). `check_eval` makes every check of a run without writing
anything (`run_eval` calls it before creating `out`; `cot` calls it for each mode before claiming its own).

`shard` ("i/n") runs the i-th of n parts of the items, balanced by prompt length (`cluster/shard.py`; the
partition is over all of the task's items, before `only_ids`); `rheads merge` combines the parts. Everything a
shard shares with the whole run stays the whole run's: the items' hash, their `index`, and the prompts of the
`mean` ablation's reference.

Left out on purpose: sampling and self-consistency (greedy only), stop strings during decoding (a plain
prompt's continuation is cut at the next "Question:" before extraction), and sorting prompts by length.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..analysis.stats import bootstrap_ci
from ..cluster.shard import select
from ..config import Config, ModelConfig
from ..errors import ParamError, RHeadsError
from ..atlas.match import check_model as check_atlas_model
from ..heads.masks import format_heads, resolve_mask, to_ablate
from ..io.jsonl import atomic_write_json
from ..io.rundir import open_run
from ..models.info import eos_ids, model_dims, model_key, model_meta
from ..capture.attention import check_model
from ..capture.controller import AttentionController, collect_means
from ..capture.decoding import default_batch_size, generate_batch, pad_id
from ..version import FORMAT_VERSION, __version__
from .tasks.loading import load_exemplars, load_items
from .tasks.numbers import answer_line_complete
from .tasks.prompts import TaskPrompt, build_prompt, use_chat
from .tasks.registry import Item, extract, get_task, is_correct, resolve_mode


@dataclass
class EvalConfig(Config):
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
    stop_at_answer: bool = False  # number tasks: stop a generation once its "answer is N" line is complete
    only_ids: list[str] | None = None  # run only the items with these ids (the cut-off reruns, extend.py)
    shard: str | None = None  # "i/n": only the i-th of n parts of the items, balanced by prompt length

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


def _all_items(tokenizer, config: EvalConfig) -> tuple[list[Item], list[TaskPrompt]]:
    """Every item of the task (the limit applied) and its prompt, before `only_ids` and the shard."""
    spec = get_task(config.task)
    items = load_items(spec, config.data, limit=config.limit, steps=config.steps, seed=config.seed, split=config.split)
    shots = load_exemplars(spec, config.shots or 0, config.fewshot_file, steps=config.steps, seed=config.seed)
    chat = use_chat(tokenizer, config.chat)
    return items, [build_prompt(tokenizer, it, config.mode, shots, chat) for it in items]


def shard_units(items: list[Item], prompts: list[TaskPrompt]) -> list[tuple[str, int]]:
    """(id, prompt tokens) of each item: the units a shard picks from, and their costs."""
    return [(it.id, len(p.input_ids)) for it, p in zip(items, prompts)]


def select_shard(units: list[tuple[str, int]], shard: str | None, out: Path | None = None,
                 jsonl: str = "items.jsonl") -> set[str]:
    """The ids of this shard's units (a one-line ParamError for a bad shard); with `out`, writes its manifest."""
    mine = select(units, shard, cost=lambda u: u[1], key=lambda u: u[0], out=out, jsonl=jsonl, kind="item",
                  what="items")
    return {u[0] for u in mine}


def prepare_run(tokenizer, config: EvalConfig) -> tuple[list[Item], list[TaskPrompt], list[int], list]:
    """The run's items and prompts (`only_ids` applied, the shard not), the indices of this shard's among them,
    and the units of the shard's partition (`shard_units` of all the task's items)."""
    items, prompts = _all_items(tokenizer, config)
    units = shard_units(items, prompts)
    mine = select_shard(units, config.shard)
    if config.only_ids is not None:
        if not config.only_ids:
            raise RHeadsError("only_ids is empty: there is no item to run")
        unknown = set(config.only_ids) - {it.id for it in items}
        if unknown:
            raise RHeadsError(f"{len(unknown)} item ids to run are not among the task's items (e.g. "
                              f"{sorted(unknown)[0]!r}): the data or the item limit changed since the run was made")
        keep = set(config.only_ids)
        kept = [i for i, it in enumerate(items) if it.id in keep]  # in the task's order
        items, prompts = [items[i] for i in kept], [prompts[i] for i in kept]
    return items, prompts, [i for i, it in enumerate(items) if it.id in mine], units


def prepare(tokenizer, config: EvalConfig) -> tuple[list[Item], list[TaskPrompt]]:
    """The items of a resolved config and their prompts (this shard's, with `shard`)."""
    items, prompts, mine, _ = prepare_run(tokenizer, config)
    return [items[i] for i in mine], [prompts[i] for i in mine]


@dataclass
class EvalPlan:
    """A resolved config checked against a loaded model: its mask, items and prompts (see `check_eval`)."""

    config: EvalConfig
    heads: list[tuple[int, int]]
    ctl: AttentionController
    items: list[Item]  # the run's (`only_ids` applied), every shard's
    prompts: list[TaskPrompt]
    batch_size: int
    mine: list[int]  # indices of this shard's items (all of them unsharded)
    units: list[tuple[str, int]]  # what the shard was picked from (`shard_units`)


def check_eval(model, tokenizer, config: EvalConfig, batch_size: int | None = None) -> EvalPlan:
    """Every check of a run before anything is written: the model, batch size, task and mode, mask and ablation
    mode, items and prompts, and the longest prompt against the model's context (one-line errors)."""
    check_model(model)
    config = config.resolved()
    spec = get_task(config.task)
    assert config.mode is not None and config.max_new_tokens is not None
    batch_size = batch_size or default_batch_size(model)
    if batch_size < 1:
        raise ParamError("batch_size", batch_size, "must be at least 1")
    if config.stop_at_answer and spec.answer != "number":
        raise RHeadsError(f"stop_at_answer needs a number task; {config.task!r} has text answers")
    L, H, max_ctx = model_dims(model)
    if config.scores:
        check_atlas_model(config.scores, model)  # other dimensions refused, other weights warned
    heads = resolve_mask(config.mask, config.scores, L, H, threshold=config.threshold, seed=config.mask_seed)
    ctl = AttentionController(ablate=to_ablate(heads), mode=config.ablation)  # validates the mode
    items, prompts, mine, units = prepare_run(tokenizer, config)
    longest = max(len(p.input_ids) for p in prompts)
    if max_ctx and longest + config.max_new_tokens > max_ctx:
        raise ParamError("max_new_tokens", config.max_new_tokens, f"the longest prompt ({longest} tokens) + "
                         f"{config.max_new_tokens} new tokens exceeds the model's context of {max_ctx}: use fewer "
                         "{shots} or a smaller {max_new_tokens}")
    return EvalPlan(config, heads, ctl, items, prompts, batch_size, mine, units)


def run_eval(model, tokenizer, config: EvalConfig, out: str | Path | None = None, *, batch_size: int | None = None,
             progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate `config` on a loaded model; returns the summary (also written to out/summary.json). Everything is
    checked (`check_eval`) before `out` is created."""
    plan = check_eval(model, tokenizer, config, batch_size)
    config, heads, ctl, items, prompts, batch_size = (plan.config, plan.heads, plan.ctl, plan.items, plan.prompts,
                                                      plan.batch_size)
    spec = get_task(config.task)
    mode = config.mode
    assert mode is not None and config.max_new_tokens is not None
    eos = eos_ids(model, tokenizer)
    pad = pad_id(tokenizer, eos)
    stop = answer_line_complete if config.stop_at_answer else None
    mean_info = None
    if config.ablation == "mean" and heads:
        mean_info = {"source": "collect_means over the first prompts of this run, unmasked",
                     "n_prompts": min(len(prompts), max(1, config.mean_ref_prompts))}
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "masked_heads": format_heads(heads), "items_sha": items_hash(items), "n_items": len(items),
            "model": model_meta(model), "model_key": model_key(model), "mean_reference": mean_info}

    done: dict[str, dict] = {}
    writer = None
    if out is not None:
        out = Path(out)
        done, writer = open_run(out, meta, keys=("config", "masked_heads", "items_sha", "model_key"),
                                jsonl="items.jsonl", kind="item", defaults={"config": config.defaults()},
                                overwrite=overwrite)
        if config.shard is not None:
            select_shard(plan.units, config.shard, out)  # the manifest `rheads merge` reads

    todo = [i for i in plan.mine if items[i].id not in done]
    try:
        if mean_info and todo:
            refs = [torch.tensor([p.input_ids]) for p in prompts[: mean_info["n_prompts"]]]
            ctl.means = collect_means(model, refs)  # layer -> [H, D]
        bar = tqdm(total=len(plan.mine), initial=len(plan.mine) - len(todo), unit="item", disable=not progress,
                   desc=f"{config.task} {mode} {config.mask}")
        for s in range(0, len(todo), batch_size):
            batch = todo[s : s + batch_size]
            t0 = time.perf_counter()
            gens = generate_batch(model, [prompts[i].input_ids for i in batch], config.max_new_tokens, eos, ctl, pad,
                                  tokenizer=tokenizer, stop=stop)
            seconds = (time.perf_counter() - t0) / len(batch)
            for i, g in zip(batch, gens):
                rec = item_record(spec, mode, items[i], i, prompts[i],
                                  tokenizer.decode(g.tokens, skip_special_tokens=True), len(g.tokens), seconds,
                                  g.reason)
                done[rec["id"]] = rec
                if writer:
                    writer.write(rec)
            bar.update(len(batch))
            n_ok = sum(done[items[i].id]["correct"] for i in plan.mine if items[i].id in done)
            bar.set_postfix(acc=f"{n_ok / max(1, len(done)):.3f}")
        bar.close()
    finally:
        if writer:
            writer.close()

    results = [done[items[i].id] for i in plan.mine]
    summary = eval_summary(results, config, heads, mean_info, model, batch_size)
    if out is not None:
        atomic_write_json(out / "summary.json", summary)
    return summary


def item_record(spec, mode: str, item: Item, index: int, prompt: TaskPrompt, generation: str, new_tokens: int,
                seconds: float, reason: str) -> dict[str, Any]:
    generation = generation.strip()
    extracted = extract(spec, generation, mode)
    return {"type": "item", "id": item.id, "index": index, "question": item.question, "answers": list(item.answers),
            "prompt": prompt.text, "prompt_tokens": len(prompt.input_ids), "generation": generation,
            "extracted": extracted, "correct": bool(is_correct(spec, extracted, item)), "new_tokens": new_tokens,
            "ended": reason, "cut_off": reason == "length",
            "seconds": round(seconds, 3)}


def cut_off(record: dict, max_new_tokens: int | None) -> bool:
    """Whether the token limit, not EOS or a stop, ended the generation (older records: it used every token)."""
    if "cut_off" in record:
        return bool(record["cut_off"])
    return max_new_tokens is not None and record["new_tokens"] >= max_new_tokens


def eval_summary(records: list[dict], config: EvalConfig, heads: list[tuple[int, int]], mean_info: dict | None,
              model=None, batch_size: int | None = None) -> dict[str, Any]:
    """summary.json: accuracy (fraction correct) over n items, and what was run."""
    n = len(records)
    n_ok = sum(r["correct"] for r in records)
    cut = [r for r in records if cut_off(r, config.max_new_tokens)]
    n_cut_ok = sum(r["correct"] for r in cut)
    return {
        "version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
        "model": model_meta(model) if model is not None else None,
        "task": config.task, "mode": config.mode, "mask": config.mask,
        "ablation": config.ablation if heads else None, "masked_heads": format_heads(heads), "n_masked": len(heads),
        "mean_reference": mean_info,
        "accuracy": round(n_ok / n, 6) if n else 0.0, "n": n, "n_correct": n_ok,
        "ci95": bootstrap_ci([float(r["correct"]) for r in records]),
        "item_correct": [int(r["correct"]) for r in records],
        "n_cut_off": len(cut), "cut_off_share": round(len(cut) / n, 4) if n else 0.0, "n_cut_off_correct": n_cut_ok,
        # what the token limit can have cost: accuracy on the answers it did not cut, and with every cut one right
        "accuracy_uncut": round((n_ok - n_cut_ok) / (n - len(cut)), 6) if n > len(cut) else None,
        "accuracy_cut_right": round((n_ok - n_cut_ok + len(cut)) / n, 6) if n else None,
        "n_no_answer": sum(r["extracted"] is None for r in records),
        "mean_new_tokens": round(sum(r["new_tokens"] for r in records) / n, 2) if n else 0.0,
        "batch_size": batch_size, "seconds": round(sum(r.get("seconds", 0.0) for r in records), 1),
    }


def format_summary(summary: dict) -> str:
    masked = f"{summary['n_masked']} heads masked ({summary['ablation']})" if summary["n_masked"] else "no heads masked"
    return (f"{summary['task']} ({summary['mode']}), mask {summary['mask']}, {masked}: accuracy "
            f"{summary['accuracy']:.3f} ({summary['n_correct']}/{summary['n']}), no answer {summary['n_no_answer']}, "
            f"{summary['mean_new_tokens']:.0f} new tokens per item")
