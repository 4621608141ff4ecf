"""The `rheads tasks`, `rheads eval`, `rheads cot-experiment` and `rheads extend-cut` subcommands.

`--item-seed` is the seed of generated task items (vartrack, wordproblems; the config's `seed`); the random:K
mask draw has its own `--mask-seed`. Every flag is turned into the run's config before the model loads.
`--batch-size` defaults to 8 on CUDA and 4 elsewhere; it does not change greedy results, so it is not part
of the run's config and may change between a run and its resumption.

Left out on purpose: anything the library does not do; the handlers load the model once and print tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RHeadsError
from ..capture.modes import BUILTIN_ABLATION_DOCS, ablation_help
from ..cluster.shard import parse_shard
from .common import (add_chat_args, add_model_args, add_out_args, add_shard_arg, finish_shard, load, model_config,
                     parse_list, run_plan, sweep_kwargs)

_DEFAULT_KS = "0,10,20,50"


def _add_common(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--shots", type=int, default=None, help="few-shot exemplars (default: the task's, see `rheads tasks`)")
    p.add_argument("--fewshot-file", default=None,
                   help="take exemplars from this JSONL (the task's format, e.g. a GSM8K train file) instead of "
                   "the inline ones")
    p.add_argument("--steps", type=int, default=3, help="generated tasks: operations per item (default: %(default)s)")
    p.add_argument("--item-seed", type=int, default=0,
                   help="generated tasks: the seed of their items and exemplars (default: %(default)s)")
    add_chat_args(p)
    p.add_argument("--scores", default=None, help="score file for top/random masks: scores.json or a paper file")
    p.add_argument("--ablation", default="zero", choices=sorted(BUILTIN_ABLATION_DOCS),
                   help=ablation_help())
    p.add_argument("--threshold", type=float, default=0.1, help="retrieval heads score above it (default: 0.1)")
    p.add_argument("--mask-seed", type=int, default=0, help="seed of the (first) random:K mask draw")
    p.add_argument("--batch-size", type=int, default=None, help="prompts decoded together (default: 8 on CUDA, 4 else)")
    p.add_argument("--mean-ref-prompts", type=int, default=8,
                   help="ablation mean: the first N prompts of a run give the reference means")
    p.add_argument("--stop-at-answer", action="store_true",
                   help="number tasks: stop a generation once its 'The answer is N' line is complete (the extracted "
                   "answer cannot change after it)")


def cmd_tasks(a) -> None:
    from ..evals.tasks.registry import format_tasks_table

    print(format_tasks_table())


def cmd_eval(a) -> None:
    mode = a.mode
    if a.cot:
        if mode not in (None, "cot"):
            raise RHeadsError(f"--cot and --mode {mode} disagree: give one of them")
        mode = "cot"
    mc = model_config(a)  # one-line errors before torch loads
    parse_shard(a.shard)
    from ..evals.taskeval import EvalConfig, format_summary, run_eval

    config = EvalConfig(model=mc, task=a.task, data=a.data, split=a.split, mode=mode, limit=a.limit, shots=a.shots,
                        fewshot_file=a.fewshot_file, steps=a.steps, seed=a.item_seed, chat=a.chat, mask=a.mask,
                        scores=a.scores, ablation=a.ablation, threshold=a.threshold, mask_seed=a.mask_seed,
                        max_new_tokens=a.max_new_tokens, mean_ref_prompts=a.mean_ref_prompts,
                        stop_at_answer=a.stop_at_answer, shard=a.shard)
    config.resolved()  # the task and its mode, before the model loads
    _, model, tokenizer = load(a)
    summary = run_eval(model, tokenizer, config, out=Path(a.out), batch_size=a.batch_size, overwrite=a.overwrite)
    print(format_summary(summary))
    finish_shard(a)
    print(f"\nresults in {a.out}/ (items.jsonl, summary.json)")


def cmd_cot_experiment(a) -> None:
    mc = model_config(a)  # one-line errors before torch loads
    sweep = sweep_kwargs(a, "rheads cot-experiment", _DEFAULT_KS, mask_seed=a.mask_seed)
    parse_shard(a.shard)
    from ..studies.cot import CotConfig, format_table, run_cot_experiment, unfinished

    config = CotConfig(model=mc, task=a.task, data=a.data, limit=a.limit,
                       shots=a.shots, fewshot_file=a.fewshot_file, steps=a.steps, seed=a.item_seed,
                       closedbook_task=a.closedbook_task, closedbook_data=a.closedbook_data,
                       closedbook_limit=a.closedbook_limit, chat=a.chat, max_new_tokens_cot=a.max_new_tokens_cot,
                       max_new_tokens_direct=a.max_new_tokens_direct,
                       max_new_tokens_closedbook=a.max_new_tokens_closedbook, mean_ref_prompts=a.mean_ref_prompts,
                       copy_items=a.copy_items, modes=parse_list(a.modes), stop_at_answer=a.stop_at_answer,
                       shard=a.shard, **sweep)
    _, model, tokenizer = load(a)
    summary = run_plan(run_cot_experiment, model, tokenizer, config, a, format_table,
                       "summary.json, drop.png, copy_share.json, copy_share.png, one eval dir per run")
    finish_shard(a, complete=not unfinished(config, summary, a.out))


def cmd_extend_cut(a) -> None:
    import json

    from ..config import ModelConfig

    run = Path(a.run)
    if not (run / "config.json").exists():
        raise RHeadsError(f"{run} is not a run directory (no config.json): give an eval or cot-experiment --out")
    single = (run / "items.jsonl").exists()
    from ..studies.extend import check_extend, extend_experiment, extend_run, format_extended

    check_extend(run, a.max_new_tokens, parse_list(a.only))  # before the model loads
    from ..models.loading import load_model
    from ..studies.cot import format_table

    mc = ModelConfig.from_dict(json.loads((run / "config.json").read_text())["config"]["model"])
    if a.device or a.device_map:  # the device may change; the model and its dtype may not (the runs are merged)
        mc = ModelConfig(model=mc.model, device=a.device or mc.device, dtype=mc.dtype,
                         device_map=a.device_map or mc.device_map)
    model, tokenizer = load_model(mc.model, device=mc.device, dtype=mc.dtype, device_map=mc.device_map)
    if single:
        s = extend_run(model, tokenizer, run, a.max_new_tokens, Path(a.out), batch_size=a.batch_size,
                       overwrite=a.overwrite)
        e = s["extended"]
        print(f"{e['n_rerun']} cut answers rerun with {a.max_new_tokens} new tokens: {e['n_rerun_ended']} end, "
              f"{e['n_rerun_correct']} right; accuracy {s['accuracy']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}], "
              f"{s['n_cut_off']} of {s['n']} still cut")
    else:
        s = extend_experiment(model, tokenizer, run, a.max_new_tokens, Path(a.out), only=parse_list(a.only),
                              batch_size=a.batch_size, overwrite=a.overwrite)
        print(format_table(s) + "\n\n" + format_extended(s))
    print(f"\nresults in {a.out}/ (summary.json; the reruns in rerun/ directories)")


def add_parsers(sub) -> None:
    """Add `tasks`, `eval`, `cot-experiment` and `extend-cut` to an argparse subparsers object."""
    p = sub.add_parser("tasks", help="the task registry: reasoning, closed-book and generated tasks")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("eval", help="accuracy on a task, optionally with heads masked",
                       description="Evaluate a model on a registered task (see `rheads tasks`) with greedy decoding, "
                       "optionally with attention heads masked. Rerun the same command to resume.")
    _add_common(p)
    p.add_argument("--task", default="gsm8k", help="a registered task (default: %(default)s)")
    p.add_argument("--data", default=None, help="file tasks: a local JSONL, or a hub id (needs `datasets` and a network)")
    p.add_argument("--split", default=None, help="hub datasets: the split (default: the task's)")
    p.add_argument("--limit", type=int, default=None, help="the first N items")
    p.add_argument("--cot", action="store_true", help="chain-of-thought prompt (same as --mode cot)")
    p.add_argument("--mode", default=None, choices=["cot", "direct", "closedbook"],
                   help="prompt mode (default: the task's first mode)")
    p.add_argument("--mask", default="none", help="none, top:K, random:K (outside the retrieval set) or "
                   "heads:16-19,11-15 (layer-head list)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's for the mode")
    add_out_args(p, "runs/eval")
    add_shard_arg(p, "items")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("cot-experiment", help="CoT, direct and closed-book accuracy vs K masked heads, and the CoT "
                       "copy analysis", description="For each of cot, direct (the reasoning --task) and closedbook "
                       "(--closedbook-task): accuracy unmasked, with the top-K retrieval heads masked, and with K random "
                       "non-retrieval heads masked (--random-seeds draws). Then one unmasked CoT pass with top-1 capture: "
                       "which heads copy the repeated tokens.")
    _add_common(p)
    p.add_argument("--k", default=_DEFAULT_KS, help="numbers of heads to mask (default: %(default)s)")
    p.add_argument("--random-seeds", type=int, default=3, help="random draws per K (default: %(default)s)")
    p.add_argument("--task", default="gsm8k", help="reasoning task run in cot and direct modes (default: %(default)s)")
    p.add_argument("--data", default=None, help="its data: a local JSONL or a hub id (default: the task's source)")
    p.add_argument("--limit", type=int, default=200, help="its first N items (default: %(default)s)")
    p.add_argument("--closedbook-task", default="closedbook-facts", help="closed-book task (default: %(default)s)")
    p.add_argument("--closedbook-data", default=None, help="its data (default: the built-in questions)")
    p.add_argument("--closedbook-limit", type=int, default=None, help="its first N items (default: all)")
    p.add_argument("--max-new-tokens-cot", type=int, default=None, help="default: the task's (256)")
    p.add_argument("--max-new-tokens-direct", type=int, default=None, help="default: the task's (16)")
    p.add_argument("--max-new-tokens-closedbook", type=int, default=None, help="default: the task's (16)")
    p.add_argument("--copy-items", type=int, default=20,
                   help="items of the unmasked CoT capture pass for the copy analysis (0: skip; default: %(default)s)")
    p.add_argument("--controls", default="random",
                   help="control masks per K: random (anywhere) and/or random-layer (the top-K's layers)")
    p.add_argument("--modes", default="cot,direct,closedbook", help="which of cot, direct, closedbook to run")
    add_out_args(p, "runs/cot-exp")
    p.add_argument("--only", default=None, help="run only these parts, e.g. cot/top-k50,cot/random-k50-seed0,copy, "
                   "to split the runs across processes sharing --out (give each process different parts); the "
                   "summary covers what has finished")
    add_shard_arg(p, "items (every run and the copy analysis do the same part of theirs)")
    p.set_defaults(func=cmd_cot_experiment)

    p = sub.add_parser("extend-cut", help="rerun the answers a token limit cut off with a higher limit",
                       description="Rerun the cut-off answers of an eval run, or of every finished run of a "
                       "cot-experiment directory, with a higher --max-new-tokens (same model, dtype, prompts and "
                       "mask), and score each run as if it had had that limit: greedy answers that ended earlier "
                       "would end the same way. The original runs are not touched. Rerun to resume.")
    p.add_argument("run", help="an `rheads eval` or `rheads cot-experiment` output directory")
    p.add_argument("--max-new-tokens", type=int, required=True, help="the new limit (above the run's)")
    p.add_argument("--device", default=None, help="run on this device instead of the run's (its dtype stays)")
    p.add_argument("--device-map", default=None, help="passed to from_pretrained, e.g. auto (accelerate)")
    p.add_argument("--batch-size", type=int, default=None, help="prompts decoded together (default: 8 on CUDA, 4 else)")
    add_out_args(p, "runs/extend-cut")
    p.add_argument("--only", default=None, help="cot-experiment directories: extend only these parts, e.g. "
                   "cot/top-k50,cot/random-k50-seed0 (processes sharing --out may split them)")
    p.set_defaults(func=cmd_extend_cut)
