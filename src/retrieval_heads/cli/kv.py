"""The `rheads kv-sweep` subcommand, and the KV-cache flags `rheads niah` shares (`add_kv_args`, `kv_kwargs`).

  rheads niah --model qwen2.5-coder-0.5b --kv retrieval --scores runs/qwen/scores.json --sink 4 --recent 256 \\
      --out runs/kv-qwen
  rheads kv-sweep --model smollm2-135m --scores runs/smollm2/scores.json --recent 64,128,256 \\
      --lengths 2000,4000,8000 --out runs/kv-sweep

Window and policy flags are checked before the model loads (one-line errors).

Left out on purpose: anything the library does not do; the handlers load the model once and print a table.
"""

from __future__ import annotations

import argparse

from ..errors import RHeadsError
from .common import add_model_args, add_out_args, add_probe_args, load, parse_list, probe_config, run_plan

POLICY_NAMES = ("full", "retrieval", "random", "streaming")  # runtime/kvpolicy.POLICIES, without importing torch


def add_kv_args(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """--kv (not for the sweep), --sink, --recent, --kv-threshold, --kv-top, --kv-seed, --prefill-chunk."""
    if not sweep:
        p.add_argument("--kv", default="full", choices=POLICY_NAMES,
                       help="KV cache: full; retrieval (KV heads holding a retrieval head keep everything, the others "
                       "sink + recent tokens; needs --scores); random (as many random KV heads full); streaming (every "
                       "head sink + recent)")
        p.add_argument("--recent", type=int, default=256,
                       help="recent tokens a compressed KV head keeps (default: 256)")
    p.add_argument("--sink", type=int, default=4, help="first tokens a compressed KV head keeps (default: 4)")
    p.add_argument("--kv-threshold", type=float, default=0.1,
                   help="a KV head stays full when a query head of its group scores above it (default: 0.1)")
    p.add_argument("--kv-top", type=int, default=0,
                   help="K > 0: the top K query heads by score are the retrieval heads instead (default: 0)")
    p.add_argument("--kv-seed", type=int, default=0, help="seed of the random policy's draw (default: 0)")
    p.add_argument("--prefill-chunk", type=int, default=0,
                   help="prefill this many tokens per forward to lower the prefill's peak memory (0: all at once; "
                   "needs --kv-prefill window)")
    p.add_argument("--kv-prefill", default="full", choices=["full", "window"],
                   help="what compressed KV heads see during prefill: full (everything, then they keep sink + recent) "
                   "or window (sink + recent already in prefill, StreamingLLM/DuoAttention) (default: full)")


def _check(a, recents: list[int]) -> None:
    for r in recents:
        if a.sink < 0 or r < 0 or a.sink + r < 1:
            raise RHeadsError(f"--sink {a.sink} and --recent {r}: both must be >= 0 and sink + recent >= 1 "
                              "(e.g. --sink 4 --recent 256)")
    if a.prefill_chunk < 0:
        raise RHeadsError(f"--prefill-chunk {a.prefill_chunk}: use a positive number of tokens, or 0 for no chunking")
    if a.prefill_chunk and a.kv_prefill == "full" and getattr(a, "kv", "retrieval") != "full":
        raise RHeadsError("--prefill-chunk with --kv-prefill full: a chunk cannot attend to the tokens the cache "
                          "already dropped; add --kv-prefill window, or drop --prefill-chunk")
    if a.kv_top < 0:
        raise RHeadsError(f"--kv-top {a.kv_top}: use a number of query heads >= 1, or 0 to use --kv-threshold")


def kv_kwargs(a) -> dict:
    """NiahConfig fields from the flags of `add_kv_args` (checked before any model loads)."""
    _check(a, [a.recent])
    if a.kv in ("retrieval", "random") and not a.scores:
        raise RHeadsError(f"--kv {a.kv} needs --scores: a scores.json from `rheads detect` on this model")
    return dict(kv=a.kv, kv_sink=a.sink, kv_recent=a.recent, kv_threshold=a.kv_threshold, kv_top=a.kv_top,
                kv_seed=a.kv_seed, prefill_chunk=a.prefill_chunk, kv_prefill=a.kv_prefill)


def kv_line(summary: dict) -> str:
    """One line on the KV cache of a NIAH summary: policy, the most it held against the full cache."""
    held, full = summary.get("kv_bytes"), summary.get("kv_bytes_full")
    if not held or not full:
        return f"KV cache: {summary.get('kv_policy', 'full')}"
    extra = "" if summary.get("kv_policy") == "full" else \
        f" (sink {summary['kv_sink']}, recent {summary['kv_recent']}, {summary['kv_prefill']} prefill)"
    return (f"KV cache: {summary['kv_policy']}{extra}: held at most {held / 2**20:.1f} MiB against "
            f"{full / 2**20:.1f} MiB for the full cache; {100 * summary['kv_share']:.1f}% kept on average")


def _recents(spec: str) -> list[int]:
    try:
        out = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out:
        raise RHeadsError(f"bad --recent {spec!r}: write a comma list of windows, e.g. 64,128,256")
    return out


def cmd_kv_sweep(a) -> None:
    from ..studies.kvsweep import KVSweepConfig, format_table, run_kv_sweep

    recents = _recents(a.recent)
    _check(a, recents)
    policies = parse_list(a.policies) or []
    bad = [p for p in policies if p not in POLICY_NAMES]
    if bad or not policies:
        raise RHeadsError(f"bad --policies {a.policies!r}: a comma list of {', '.join(POLICY_NAMES)}")
    if not a.scores and (set(policies) & {"retrieval", "random"} or not a.no_matched):
        raise RHeadsError("kv-sweep needs --scores: a scores.json from `rheads detect` on this model")
    mc, model, tokenizer = load(a)
    config = KVSweepConfig(model=mc, probe=probe_config(a, seed=a.needle_seed), scores=a.scores, policies=policies,
                           sink=a.sink, recent=recents, matched_streaming=not a.no_matched,
                           kv_threshold=a.kv_threshold, kv_top=a.kv_top, kv_seed=a.kv_seed,
                           prefill_chunk=a.prefill_chunk, kv_prefill=a.kv_prefill, max_new_tokens=a.max_new_tokens,
                           stop=parse_list(a.stop))
    run_plan(run_kv_sweep, model, tokenizer, config, a, format_table,
             "summary.json, budget.png, heatmaps.png, one NIAH run dir per arm")


def add_parsers(sub) -> None:
    """Add `kv-sweep` to an argparse subparsers object (cli.py's `sub`)."""
    p = sub.add_parser("kv-sweep", help="NIAH under each KV-cache policy and window, against the KV bytes kept",
                       description="One NIAH run per arm: the full cache; retrieval, random and streaming at each "
                       "--recent window; and streaming at the retrieval cache's budget (per length). Rerun to resume.")
    add_model_args(p)
    add_probe_args(p, needles="eval", lengths="2000,4000,8000", depths="0:100:5", per_cell=1)
    p.add_argument("--needle-seed", type=int, default=42, help="seed of the needle order (default: %(default)s)")
    p.add_argument("--scores", default=None, help="retrieval scores of this model (scores.json from rheads detect)")
    p.add_argument("--policies", default=",".join(POLICY_NAMES), help="arms to run (default: %(default)s)")
    p.add_argument("--recent", default="64,128,256", help="recent windows, a comma list (default: %(default)s)")
    p.add_argument("--no-matched", action="store_true",
                   help="skip the streaming control at the retrieval cache's budget")
    add_kv_args(p, sweep=True)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--stop", default=None, help="comma list of stop strings (see rheads niah)")
    p.add_argument("--batch-size", type=int, default=1, help="prompts decoded together (left-padded)")
    p.add_argument("--only", default=None, help="run only these arms (e.g. full,retrieval-r256) to split the work "
                   "across processes sharing --out; the summary covers what has finished")
    add_out_args(p, "runs/kv-sweep")
    p.set_defaults(func=cmd_kv_sweep)
