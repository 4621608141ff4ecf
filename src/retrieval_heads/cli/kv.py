"""The `rheads kv-sweep` subcommand, and the KV-cache flags `rheads niah` shares (`add_kv_args`, `kv_config`).

  rheads niah --model qwen2.5-coder-0.5b --kv retrieval --scores runs/qwen/scores.json --sink 4 --recent 256 \\
      --out runs/kv-qwen
  rheads kv-sweep --model smollm2-135m --scores runs/smollm2/scores.json --recent-windows 64,128,256 \\
      --lengths 2000,4000,8000 --out runs/kv-sweep

The policy choices (`--kv`, `--policies`) are the registry's (`kvcache.policy_names()`, read when the parser is
built, so a policy registered before that is offered). The flags only map to a `KVConfig`; the library checks
it (`KVConfig.validate`, `KVSweepConfig.validate`) before the model loads, and its errors name these flags
through `flags.py`.

Left out on purpose: any check of its own, and anything the library does not do; the handlers load the model
once and print a table.
"""

from __future__ import annotations

import argparse

from ..errors import RHeadsError
from ..kvcache.config import PREFILL_MODES, KVConfig
from ..kvcache.registry import get_policy_class, policy_names
from .common import (add_model_args, add_out_args, add_probe_args, add_shard_arg, finish_shard, load, model_config,
                     parse_list, probe_config, run_plan)

SAVES = ("Where each saves (docs/kv-cache.md): at --kv-budget, every policy that takes one saves in prefill too "
         "(each layer keeps only its pick once its attention has run: the prefill peak holds one layer's whole "
         "prompt) and in decoding; without a budget, retrieval, random and streaming save from the first decoding "
         "step on (the prefill attends to the whole prompt), and in prefill too only with --kv-prefill window and "
         "--prefill-chunk.")


def policy_help() -> str:
    """Each registered policy's one line, and where the compressing ones save memory."""
    lines = [f"{n}: {get_policy_class(n).help}" + (" (needs --scores)" if get_policy_class(n).needs_scores else "")
             for n in policy_names()]
    return "KV cache policy: " + "; ".join(lines) + ". " + SAVES


def add_kv_args(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """--kv and --recent (not for the sweep), --sink, --kv-threshold, --kv-top, --kv-seed, --kv-budget,
    --kv-prefill, --prefill-chunk."""
    if not sweep:
        p.add_argument("--kv", default="full", choices=policy_names(), help=policy_help() + " (default: full)")
        p.add_argument("--recent", type=int, default=256,
                       help="recent tokens a compressed KV head keeps (default: 256)")
    p.add_argument("--sink", type=int, default=4, help="first tokens a compressed KV head keeps (default: 4)")
    p.add_argument("--kv-threshold", type=float, default=0.1,
                   help="a KV head stays full when a query head of its group scores above it (default: 0.1)")
    p.add_argument("--kv-top", type=int, default=0,
                   help="K > 0: the top K query heads by score are the retrieval heads instead (default: 0)")
    p.add_argument("--kv-seed", type=int, default=0, help="seed of the random policy's draw (default: 0)")
    if not sweep:  # (the sweep takes a list: --budgets)
        p.add_argument("--kv-budget", type=float, default=None,
                       help="the share of the full cache's KV bytes a policy keeps of the prompt, in (0, 1]: needed "
                       "by snapkv, headkv and hybrid; retrieval, random and streaming take it too (docs/kv-cache.md)")
    p.add_argument("--prefill-chunk", type=int, default=0,
                   help="prefill this many tokens per forward, which lowers the prefill's peak memory (0: all at "
                   "once; needs --kv-prefill window with a compressing policy)")
    p.add_argument("--kv-prefill", default="full", choices=list(PREFILL_MODES),
                   help="what compressed KV heads see during prefill: full (everything, then they keep sink + recent: "
                   "memory is saved in decoding) or window (sink + recent already in prefill, StreamingLLM/"
                   "DuoAttention: with --prefill-chunk, memory is saved in prefill too) (default: full)")


def kv_config(a, recent: int | None = None) -> KVConfig:
    """The `KVConfig` of the flags of `add_kv_args` (unchecked)."""
    return KVConfig(policy=getattr(a, "kv", "full"), sink=a.sink, recent=a.recent if recent is None else recent,
                    threshold=a.kv_threshold, top=a.kv_top, seed=a.kv_seed, prefill=a.kv_prefill,
                    prefill_chunk=a.prefill_chunk, budget=getattr(a, "kv_budget", None))


def kv_kwargs(a) -> dict:
    """NiahConfig fields from the flags of `add_kv_args`, validated by the library before any model loads."""
    return {"kv": kv_config(a).validate(a.scores)}


def kv_line(summary: dict) -> str:
    """One line on the KV cache of a NIAH summary: policy, the most it held against the full cache."""
    held, full = summary.get("kv_bytes"), summary.get("kv_bytes_full")
    if not held or not full:
        return f"KV cache: {summary.get('kv_policy', 'full')}"
    extra = "" if "kv_sink" not in summary else \
        f" (sink {summary['kv_sink']}, recent {summary['kv_recent']}, {summary['kv_prefill']} prefill)"
    if summary.get("kv_budget") is not None:
        extra = f" (budget {summary['kv_budget']:g} of the prompt)"
    return (f"KV cache: {summary['kv_policy']}{extra}: held at most {held / 2**20:.1f} MiB against "
            f"{full / 2**20:.1f} MiB for the full cache; {100 * summary['kv_share']:.1f}% kept on average")


def _windows(spec: str) -> list[int]:
    try:
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise RHeadsError(f"bad --recent-windows {spec!r}: write a comma list of windows, e.g. 64,128,256") from None


def _budgets(spec: str | None) -> list[float]:
    try:
        return [float(x) for x in (spec or "").split(",") if x.strip()]
    except ValueError:
        raise RHeadsError(f"bad --budgets {spec!r}: write a comma list of shares, e.g. 0.1,0.2,0.5") from None


def _default_policies() -> str:
    return ",".join(n for n in policy_names() if get_policy_class(n).uses_budget != "required")


def cmd_kv_suite(a) -> None:
    """`kv-sweep --suite`: every policy at every budget on the suite's tasks (studies/kvsuite.py)."""
    from ..evals.suite.run import SuiteConfig
    from ..probes.grid import parse_grid
    from ..studies.kvsuite import KVSuiteConfig, format_table, run_kv_suite

    suite = SuiteConfig(model=model_config(a), tasks=parse_list(a.suite), lengths=parse_grid(a.lengths, "lengths"),
                        samples=a.samples, seed=a.seed, haystack=a.haystack, chat=a.chat, scores=a.scores)
    policies = KVSuiteConfig().policies if a.policies == _default_policies() else parse_list(a.policies) or []
    budgets = _budgets(a.budgets) if a.budgets else KVSuiteConfig().budgets
    config = KVSuiteConfig(suite=suite, policies=policies, budgets=budgets,
                           kv=kv_config(a, recent=256), shared_prefill=a.shared_prefill).validate()  # before the load
    _, model, tokenizer = load(a)
    summary = run_kv_suite(model, tokenizer, config, a.out, overwrite=a.overwrite, batch_size=a.batch_size)
    print(format_table(summary))
    print(f"results in {a.out}/ (summary.json, budgets.png, one suite run dir per arm)")


def cmd_kv_sweep(a) -> None:
    if a.suite:
        return cmd_kv_suite(a)
    mc, probe, windows = model_config(a), probe_config(a), _windows(a.recent_windows)  # before torch loads
    from ..studies.kvsweep import KVSweepConfig, format_table, run_kv_sweep

    config = KVSweepConfig(model=mc, probe=probe, scores=a.scores, policies=parse_list(a.policies) or [],
                           recent_windows=windows, budgets=_budgets(a.budgets),
                           matched_streaming=not a.no_matched, kv=kv_config(a, recent=256),
                           max_new_tokens=a.max_new_tokens, stop=parse_list(a.stop),
                           shard=a.shard).validate()  # before the load
    _, model, tokenizer = load(a)
    summary = run_plan(run_kv_sweep, model, tokenizer, config, a, format_table,
                       "summary.json, budget.png, heatmaps.png, one NIAH run dir per arm")
    finish_shard(a, complete=not summary.get("missing"))


def add_parsers(sub) -> None:
    """Add `kv-sweep` to an argparse subparsers object (cli.py's `sub`)."""
    p = sub.add_parser("kv-sweep", help="NIAH under each KV-cache policy and window, against the KV bytes kept",
                       description="One NIAH run per arm: the full cache; every other policy at each "
                       "--recent-windows window; and streaming at the retrieval cache's budget (per length). "
                       "Everything is checked before --out is written. Rerun to resume.")
    add_model_args(p)
    add_probe_args(p, needles="eval", lengths="2000,4000,8000", depths="0:100:5", per_cell=1)
    p.add_argument("--scores", default=None, help="retrieval scores of this model (scores.json from rheads detect)")
    p.add_argument("--policies", default=_default_policies(),
                   help="arms to run: registered KV policies (default: every one that runs without a budget, "
                   "%(default)s; with --suite: full,streaming,snapkv,headkv,retrieval,hybrid)")
    p.add_argument("--recent-windows", default="64,128,256",
                   help="recent windows of the compressing arms, a comma list (default: %(default)s)")
    p.add_argument("--budgets", default=None, help="budget arms: shares of the full cache's KV bytes, a comma list "
                   "(e.g. 0.1,0.2,0.5), for every chosen policy that runs at a budget (snapkv, headkv, hybrid need "
                   "them; retrieval, random, streaming take them too)")
    p.add_argument("--suite", default=None, help="run the long-context suite's tasks instead of NIAH (a comma list, "
                   "`rheads suite list`): every policy at every --budgets (default 0.1,0.2,0.3,0.5), one `suite run` "
                   "folder per arm, each task's RULER token budget (docs/suite.md)")
    p.add_argument("--samples", type=int, default=10, help="with --suite: samples per task and length (default: 10)")
    p.add_argument("--shared-prefill", action=argparse.BooleanOptionalAction, default=True,
                   help="with --suite: prefill each batch once and derive every arm's cache from it (the same "
                   "answers as one prefill per arm, which --no-shared-prefill runs; default: shared)")
    p.add_argument("--no-matched", action="store_true",
                   help="skip the streaming control at the retrieval cache's budget")
    add_kv_args(p, sweep=True)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--stop", default=None, help="comma list of stop strings (see rheads niah)")
    p.add_argument("--batch-size", type=int, default=1, help="prompts decoded together (left-padded)")
    p.add_argument("--only", default=None, help="run only these arms (e.g. full,retrieval-r256) to split the work "
                   "across processes sharing --out; the summary covers what has finished")
    add_out_args(p, "runs/kv-sweep")
    add_shard_arg(p, "grid's samples (every arm does the same part)")
    p.set_defaults(func=cmd_kv_sweep)
