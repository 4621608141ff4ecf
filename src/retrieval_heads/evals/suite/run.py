"""The suite run: RULER tasks generated at each length (or read from RULER files), greedily decoded, scored.

`run_suite(model, tokenizer, config, out)` checks everything first (`check_config`: tasks, lengths, samples,
the RULER files, the KV settings, the mask; then against the model: its attention, its context with each
task's new tokens, the scores' shape, the qa data) and writes nothing before that. It then claims `out`
(resume, lock, busy refusal: `io/rundir.py`) and writes:
- `config.json`: the typed `SuiteConfig` (model, KV settings, mask), the masked heads, the model key and a hash
  of every prompt (`data_sha`): a rerun resumes only the same run, and a run from other prompts is refused;
- `predictions.jsonl`: a header line, then one line per sample, flushed as it goes: `task`, `index`, `length`
  (the target; for RULER files the length cell, see below), `input_tokens`, `pred`, `outputs`, `score` (0-100,
  RULER's metric), with `id`, `new_tokens`, `ended`, `seconds` and the KV bytes (`kv_bytes`, `kv_bytes_full`);
  a rerun decodes only the samples not there yet;
- `summary.json` (`summary.py`) and `heatmap.png` (task x length; `viz/suite.py`).

Generated samples: `samples` per task and length, seeded by (`seed`, task, length, index). RULER files (`data`):
the first `samples` records of each task; a record's index is its 0-based record number in the file (RULER's
own `index` can repeat), its length cell the smallest of `lengths` at or above its `length` field (without the
field: its prompt's RULER length; no `lengths`: the largest of those over the records used).

Each prompt decodes up to its task's RULER budget of new tokens (`max_new_tokens` overrides it), in batches of
one task and length (left-padded), under `AttentionController(ablate=mask)` and the KV policy's cache.

`shard` ("i/n") runs the i-th of n parts of the samples, balanced by prompt length (`cluster/shard.py`); the
config's `data_sha` stays the whole run's, and `rheads merge` combines the parts.

`open_suite` / `finish_suite` are the two halves around the decoding, for runs that decode several suite runs
at once (`studies/kvshared.py`: one prefill shared by every KV policy's run).

Left out on purpose: sampling (greedy only) and RULER's `qa_1`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...cluster.shard import parse_shard, select
from ...config import Config, ModelConfig
from ...errors import ParamError, RHeadsError
from ...kvcache.config import KVConfig
from ...version import FORMAT_VERSION, __version__
from .common import TaskContext
from .registry import RULER_ORDER, check_tasks, get_task

DEFAULT_TASKS = [n for n in RULER_ORDER if n != "qa_1"]


@dataclass
class SuiteConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: list[str] | None = field(default_factory=lambda: list(DEFAULT_TASKS))  # None: a RULER folder's tasks
    lengths: list[int] | None = field(default_factory=lambda: [4000, 8000])  # prompt tokens (chat template included)
    samples: int = 20  # per task and length
    seed: int = 42  # sample generation
    haystack: str = "paul-graham"  # the essay haystack (probes/haystack.py)
    chat: bool | None = None  # None: the tokenizer's chat template when it has one
    data: str | None = None  # a RULER file or folder of <task>/validation.jsonl instead of generating
    task_name: str | None = None  # the task of a single RULER file (default: its folder name)
    qa_data: str | None = None  # HaluEval QA jsonl (None: <cache>/data/dataset_halueval_qa.jsonl)
    heldout: str | None = None  # reserved HaluEval rows (None: ../shared/data/halueval_qa_heldout_rows.txt)
    max_new_tokens: int | None = None  # None: each task's RULER budget
    mask: str = "none"  # none, top:K, random:K, heads:... (heads/masks.py)
    scores: str | None = None  # score file for top/random masks and score-driven KV policies
    ablation: str = "zero"
    threshold: float = 0.1
    mask_seed: int = 0
    kv: KVConfig = field(default_factory=KVConfig)
    shard: str | None = None  # "i/n": only the i-th of n parts of the samples, balanced by prompt length


def check_config(config: SuiteConfig) -> dict[str, tuple[Path, list[dict]]] | None:
    """Every check that needs no model; returns the RULER records (task -> (file, records)) when `data` is set."""
    from ...heads.masks import parse_mask

    if config.samples < 1:
        raise ParamError("samples", config.samples, "use at least 1 sample per task and length")
    if config.max_new_tokens is not None and config.max_new_tokens < 1:
        raise ParamError("max_new_tokens", config.max_new_tokens, "use at least 1 new token, or None for RULER's")
    if config.lengths is not None and (not config.lengths or any(not isinstance(n, int) or n < 1
                                                                 for n in config.lengths)):
        raise ParamError("lengths", config.lengths, "use positive whole numbers of tokens, e.g. 4000,8000")
    if config.lengths is not None and len(set(config.lengths)) != len(config.lengths):
        raise ParamError("lengths", config.lengths, "name each length once")
    parse_shard(config.shard)
    spec = parse_mask(config.mask)
    masked = bool(spec.heads) or (spec.kind != "none" and spec.k > 0)
    config.kv.validate(config.scores, masked=masked)
    records = None
    if config.data is not None:
        from .ruler import read_ruler

        records = read_ruler(config.data, config.task_name)
        if config.tasks is not None:
            missing = [t for t in check_tasks(config.tasks) if t not in records]
            if missing:
                raise ParamError("tasks", ",".join(config.tasks), f"{', '.join(missing)} not in the RULER data "
                                 f"(it holds {', '.join(records)})")
            records = {t: records[t] for t in config.tasks}
    else:
        if config.task_name is not None:
            raise ParamError("task_name", config.task_name, "names the task of a RULER file: give {data} too")
        if config.lengths is None:
            raise ParamError("lengths", None, "generated tasks need lengths, e.g. 4000,8000")
        check_tasks(config.tasks or [])
        shared: dict = {}
        for n in config.tasks:  # e.g. qa_2's dataset and reserved-rows list
            get_task(n).check(_context(config, config.lengths[0], shared))
    return records


def _context(config: SuiteConfig, target: int, shared: dict) -> TaskContext:
    """The generation context at `target`; `shared` caches the essays and QA rows across lengths."""
    return TaskContext(haystack=config.haystack, target=target, qa_data=config.qa_data, heldout=config.heldout,
                       seed=config.seed, _cache=shared)


def prepare(tokenizer, config: SuiteConfig, max_ctx: int, records=None, progress: bool = False) -> list:
    """Every sample of the run, checked against the model's context (`max_ctx`, 0: unknown)."""
    from tqdm.auto import tqdm

    from .fit import finish, make_sample
    from .prompt import PromptBuilder
    from .registry import Built

    prompt = PromptBuilder(tokenizer, config.chat)
    samples, shared = [], {}
    if records is None:
        for name in config.tasks:
            task = get_task(name)
            gen = config.max_new_tokens or task.tokens_to_generate
            for n in config.lengths:
                if max_ctx and n + gen > max_ctx:
                    raise ParamError("lengths", n, f"with the {gen} new tokens of {name} exceeds the model's context "
                                     f"of {max_ctx} tokens: use lengths up to {max_ctx - gen}")
            task.check(_context(config, config.lengths[0], shared))
        bar = tqdm(total=len(config.tasks) * len(config.lengths) * config.samples, desc="suite prompts",
                   unit="sample", disable=not progress)
        for name in config.tasks:
            for n in config.lengths:
                ctx = _context(config, n, shared)
                for i in range(config.samples):
                    samples.append(make_sample(get_task(name), ctx, prompt, n, i, config.seed))
                    bar.update(1)
        bar.close()
        return samples
    for name, (path, recs) in records.items():
        task = get_task(name)
        gen = config.max_new_tokens or task.tokens_to_generate
        mine = []
        for i, r in enumerate(recs[: config.samples]):
            s = finish(task, prompt, Built(r["input"], r.get("answer_prefix", ""), r["outputs"]), 0, i)
            if max_ctx and len(s.input_ids) + gen > max_ctx:
                raise RHeadsError(f"{path} line {r['line']}: the prompt takes {len(s.input_ids)} tokens, with {gen} "
                                  f"new tokens above the model's context of {max_ctx}: use shorter RULER files")
            mine.append((s, r.get("length", s.ruler_length), r["line"]))
        largest = max(n for _, n, _ in mine)  # the file's nominal length (RULER writes at most max_seq_length)
        for s, n, line in mine:
            s.length = _cell(n, config.lengths, largest, path, line)
            samples.append(s)
    return samples


def _cell(length: int, lengths: list[int] | None, largest: int, path: Path, line: int) -> int:
    if lengths is None:
        return largest
    fits = [n for n in sorted(lengths) if n >= length]
    if not fits:
        raise ParamError("lengths", lengths, f"{path} line {line} has length {length}, above every length: add a "
                         f"length of at least {length}")
    return fits[0]


def _shard(samples: list, shard: str | None, out: Path | None = None) -> list:
    """This shard's samples (all without a shard); with `out`, its manifest for `rheads merge`."""
    return select(samples, shard, cost=lambda s: len(s.input_ids), key=lambda s: s.id, out=out,
                  jsonl="predictions.jsonl", kind="prediction")


def data_sha(samples: list) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps([s.id, s.input_ids, s.outputs]).encode())
    return h.hexdigest()[:16]


@dataclass
class SuiteRun:
    """An opened suite run (`open_suite`): its samples (this shard's), the records already there (`done`, by id),
    the writer of `predictions.jsonl` (None without `out`), the mask's controller and the KV cache factory."""

    config: SuiteConfig
    samples: list
    done: dict
    writer: Any
    ctl: Any
    cache: Any
    heads: Any
    out: Path | None
    prepared: list | None = None  # every sample before sharding (another arm of the same suite can reuse them)


def open_suite(model, tokenizer, config: SuiteConfig, out: str | Path | None = None, progress: bool = True,
               overwrite: bool = False, batch_size: int = 1, prepared: list | None = None) -> SuiteRun:
    """Every check, then claim `out` (resume, lock, busy refusal); nothing is written before the checks pass.
    `prepared`: the samples of an opened run of the same suite settings (`SuiteRun.prepared`), not built again."""
    from ...atlas.match import check_model as check_atlas_model
    from ...capture.attention import check_model
    from ...capture.controller import AttentionController
    from ...heads.masks import format_heads, resolve_mask, to_ablate
    from ...io.rundir import open_run
    from ...kvcache.factory import kv_factory
    from ...models.info import model_dims, model_key, model_meta

    records = check_config(config)
    check_model(model)
    if batch_size < 1:
        raise ParamError("batch_size", batch_size, "must be at least 1")
    L, H, max_ctx = model_dims(model)
    if config.scores:
        check_atlas_model(config.scores, model)
    heads = resolve_mask(config.mask, config.scores, L, H, threshold=config.threshold, seed=config.mask_seed)
    ctl = AttentionController(ablate=to_ablate(heads), mode=config.ablation)
    cache = kv_factory(config.kv, model, config.scores, masked=bool(heads))
    samples = prepare(tokenizer, config, max_ctx, records, progress) if prepared is None else prepared
    _shard(samples, config.shard)  # as many samples as shards, before out is touched
    everything = samples
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(),
            "masked_heads": format_heads(heads), "model": model_meta(model), "model_key": model_key(model),
            "data_sha": data_sha(samples)}
    done: dict[str, dict] = {}
    writer = None
    if out is not None:
        out = Path(out)
        done, writer = open_run(out, meta, keys=("config", "masked_heads", "model_key", "data_sha"),
                                jsonl="predictions.jsonl", kind="prediction", defaults={"config": config.defaults()},
                                overwrite=overwrite)
    samples = _shard(samples, config.shard, out)
    return SuiteRun(config, samples, done, writer, ctl, cache, heads, out, everything)


def finish_suite(model, run: SuiteRun) -> dict[str, Any]:
    """Close the writer; write `summary.json` and `heatmap.png` of every sample (all must be done)."""
    from ...io.jsonl import atomic_write_json
    from ...models.info import model_name
    from ...viz.suite import suite_heatmap
    from .summary import suite_summary

    if run.writer:
        run.writer.close()
        run.writer = None
    results = [run.done[s.id] for s in run.samples]
    config = run.config
    summary = suite_summary(results, config, run.heads, model, run.cache)
    if run.out is not None:
        atomic_write_json(run.out / "summary.json", summary)
        title = f"{model_name(model)}: suite, mask {config.mask}, KV {config.kv.policy}"
        suite_heatmap(summary, run.out / "heatmap.png", f"{title}\nmean score {summary['mean_score']:.1f}")
    return summary


def run_suite(model, tokenizer, config: SuiteConfig, out: str | Path | None = None, progress: bool = True,
              overwrite: bool = False, batch_size: int = 1) -> dict[str, Any]:
    """Run the suite of `config` on a loaded model; returns the summary (see the module docstring)."""
    run = open_suite(model, tokenizer, config, out, progress, overwrite, batch_size)
    try:
        _decode_all(model, tokenizer, run, batch_size, progress)
    finally:
        if run.writer:
            run.writer.close()
            run.writer = None
    return finish_suite(model, run)


def groups_of(samples: list) -> dict[tuple[str, int], list]:
    """The samples by (task, length), in order: a batch holds one task and length."""
    groups: dict[tuple[str, int], list] = {}
    for s in samples:
        groups.setdefault((s.task, s.length), []).append(s)
    return groups


def prediction(tokenizer, s, g, seconds: float, kv: dict, **extra) -> dict:
    """The `predictions.jsonl` record of sample `s` and its generation `g` (module docstring)."""
    from .metrics import score

    pred = tokenizer.decode(g.tokens, skip_special_tokens=True)
    return {"type": "prediction", "id": s.id, "task": s.task, "index": s.index, "length": s.length,
            "input_tokens": len(s.input_ids), "pred": pred, "outputs": s.outputs,
            "score": score(get_task(s.task).metric, pred, s.outputs), "prompt_length": len(s.input_ids),
            "new_tokens": len(g.tokens), "ended": g.reason, "seconds": round(seconds, 3), **kv, **extra}


def _decode_all(model, tokenizer, run: SuiteRun, batch_size, progress) -> None:
    from tqdm.auto import tqdm

    from ...capture.decoding import generate_batch, pad_id
    from ...kvcache.cache import prefill_chunking
    from ...models.info import eos_ids

    config, cache = run.config, run.cache
    eos = eos_ids(model, tokenizer)
    todo = [s for s in run.samples if s.id not in run.done]
    bar = tqdm(total=len(run.samples), initial=len(run.samples) - len(todo), desc="suite", unit="sample",
               disable=not progress)
    for (name, _), group in groups_of(todo).items():
        gen_tokens = config.max_new_tokens or get_task(name).tokens_to_generate
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            t0 = time.perf_counter()
            with prefill_chunking(model, config.kv.prefill_chunk):
                gens = generate_batch(model, [s.input_ids for s in batch], gen_tokens, eos, run.ctl,
                                      pad_id(tokenizer, eos), tokenizer=tokenizer, cache=cache)
            seconds = (time.perf_counter() - t0) / len(batch)
            kv = cache.usage(model, len(batch)) if cache is not None else {}
            for s, g in zip(batch, gens):
                rec = prediction(tokenizer, s, g, seconds, kv)
                run.done[s.id] = rec
                if run.writer:
                    run.writer.write(rec)
            bar.update(len(batch))
    bar.close()
