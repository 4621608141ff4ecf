"""The `rheads niah` and `rheads ablate` subcommands.

`--seed` (from the shared probe flags) is the probe seed: which needle goes in which cell, so runs with
different masks see the same needles in the same cells. `--mask-seed` is the seed of the `random:K` draw
(`ablate` uses seeds `--mask-seed .. --mask-seed + --random-seeds - 1`). Every flag is turned into the run's
config, and checked, before the model loads.

Left out on purpose: anything the library does not do; the handlers load the model once and print tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..capture.modes import BUILTIN_ABLATION_DOCS, ablation_help
from ..cluster.shard import parse_shard
from ..errors import ParamError
from .common import (add_model_args, add_out_args, add_probe_args, add_shard_arg, finish_shard, load, model_config,
                     parse_list, probe_config, run_plan, sweep_kwargs)
from .kv import add_kv_args, kv_kwargs, kv_line

_DEFAULT_KS = "0,5,10,20,50,100"


def _add_common(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_probe_args(p, needles="eval", lengths="1000:4000:4", depths="0:100:5", per_cell=1)
    p.add_argument("--mask-seed", type=int, default=42, help="seed of the random:K mask draw (default: %(default)s)")
    p.add_argument("--scores", default=None, help="score file for top/random masks: scores.json or a paper file")
    p.add_argument("--ablation", default="zero", choices=sorted(BUILTIN_ABLATION_DOCS),
                   help=ablation_help())
    p.add_argument("--threshold", type=float, default=0.1, help="retrieval heads score above it (default: 0.1)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--stop", default=None, help="comma list of stop strings ('' for none; default: a newline after "
                   "the answer for plain templates, none with a chat template)")
    p.add_argument("--batch-size", type=int, default=1, help="prompts decoded together (left-padded)")
    p.add_argument("--mean-ref-prompts", type=int, default=4, help="ablation mean: haystack windows for the means")
    p.add_argument("--mean-ref-length", type=int, default=1000, help="ablation mean: tokens per window")


def cmd_niah(a) -> None:
    mc, probe = model_config(a), probe_config(a)  # one-line errors before torch loads
    from ..evals.niah import NiahConfig

    config = NiahConfig(model=mc, probe=probe, mask=a.mask, scores=a.scores,
                        ablation=a.ablation, threshold=a.threshold, mask_seed=a.mask_seed,
                        max_new_tokens=a.max_new_tokens, stop=parse_list(a.stop), mean_ref_prompts=a.mean_ref_prompts,
                        mean_ref_length=a.mean_ref_length, shard=a.shard, **kv_kwargs(a))  # flag errors first
    parse_shard(a.shard)  # its form before the model loads; its count against the samples before --out is touched
    from ..evals.niah import format_summary, run_niah

    _, model, tokenizer = load(a)
    summary = run_niah(model, tokenizer, config, out=Path(a.out), overwrite=a.overwrite, batch_size=a.batch_size)
    print(format_summary(summary))
    print(kv_line(summary))
    finish_shard(a)
    print(f"\nresults in {a.out}/ (samples.jsonl, summary.json, heatmap.png, classes.png)")


def cmd_ablate_suite(a, sweep: dict) -> None:
    """`ablate --suite`: the sweep's masks on the suite's tasks, per family (studies/suiteablate.py)."""
    from ..evals.suite.run import SuiteConfig
    from ..probes.grid import parse_grid
    from ..studies.suiteablate import SuiteAblateConfig, format_table, run_suite_ablate

    if a.shard is not None:  # refused, not ignored: every shard would run the whole sweep
        raise ParamError("shard", a.shard, "`rheads ablate --suite` does not shard yet: run it without --shard (each "
                         "of its masks is one suite run; `rheads suite run --mask ... --shard I/N` shards one mask)")
    suite = SuiteConfig(model=model_config(a), tasks=parse_list(a.suite), lengths=parse_grid(a.lengths, "lengths"),
                        samples=a.samples, seed=a.seed, haystack=a.haystack, chat=a.chat)
    config = SuiteAblateConfig(suite=suite, **sweep)
    _, model, tokenizer = load(a)
    summary = run_suite_ablate(model, tokenizer, config, a.out, overwrite=a.overwrite, batch_size=a.batch_size)
    print(format_table(summary))
    print(f"results in {a.out}/ (summary.json, families.png, one suite run dir per mask)")


def cmd_ablate(a) -> None:
    mc, probe = model_config(a), probe_config(a)  # one-line errors before torch loads
    sweep = sweep_kwargs(a, "rheads ablate", _DEFAULT_KS, mask_seed=a.mask_seed)
    if a.suite:
        return cmd_ablate_suite(a, sweep)
    from ..studies.ablate import AblateConfig

    config = AblateConfig(model=mc, probe=probe, max_new_tokens=a.max_new_tokens, stop=parse_list(a.stop),
                          mean_ref_prompts=a.mean_ref_prompts, mean_ref_length=a.mean_ref_length, shard=a.shard,
                          **sweep)
    parse_shard(a.shard)
    from ..studies.ablate import format_table, run_ablate

    _, model, tokenizer = load(a)
    summary = run_plan(run_ablate, model, tokenizer, config, a, format_table,
                       "summary.json, curve.png, classes.png, one NIAH run dir per mask")
    finish_shard(a, complete=not summary.get("missing"))


def add_parsers(sub) -> None:
    """Add `niah` and `ablate` to an argparse subparsers object."""
    p = sub.add_parser("niah", help="needle-in-a-haystack evaluation, optionally with heads masked",
                       description="NIAH over a lengths x depths grid. --seed places the needles, --mask-seed draws a "
                       "random:K mask.")
    _add_common(p)
    p.add_argument("--mask", default="none", help="none, top:K, random:K (outside the retrieval set), "
                   "random-layer:K (outside it, in the top-K's layers) or heads:16-19,11-15 (layer-head list)")
    add_kv_args(p)
    add_out_args(p, "runs/niah")
    add_shard_arg(p)
    p.set_defaults(func=cmd_niah)

    p = sub.add_parser("ablate", help="NIAH score vs K: top-K retrieval heads masked against K random heads",
                       description="For each K: NIAH with the top-K heads masked and with K random non-retrieval "
                       "heads masked (--random-seeds draws, seeds from --mask-seed). K=0 is the unmasked baseline.")
    _add_common(p)
    p.add_argument("--k", default=_DEFAULT_KS, help="numbers of heads to mask (default: %(default)s)")
    p.add_argument("--suite", default=None, help="mask on the long-context suite's tasks instead of NIAH (a comma "
                   "list, `rheads suite list`): the score per task family (docs/suite.md)")
    p.add_argument("--samples", type=int, default=10, help="with --suite: samples per task and length (default: 10)")
    p.add_argument("--random-seeds", type=int, default=3, help="random draws per K (default: %(default)s)")
    p.add_argument("--controls", default="random,random-layer",
                   help="control masks per K: random (anywhere) and/or random-layer (the top-K's layers)")
    p.add_argument("--only", default=None, help="run only these parts (e.g. top-k20,random-k20-seed0) to split the "
                   "work across processes sharing --out; the summary covers what has finished")
    add_out_args(p, "runs/ablate")
    add_shard_arg(p, "grid's samples (every run of the sweep does the same part)")
    p.set_defaults(func=cmd_ablate)
