"""The `rheads niah` and `rheads ablate` subcommands; `add_parsers(sub)` adds them to cli.py's subparsers.

`--seed` (from the shared probe flags) is the seed of the `random:K` draw here (`ablate` uses seeds
`--seed .. --seed + --random-seeds - 1`); the needle order has its own `--needle-seed`, so runs with
different masks see the same needles in the same cells.

Left out on purpose: anything the library does not do; the handlers load the model once and print tables.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .errors import RHeadsError

_DEFAULT_KS = "0,5,10,20,50,100"


def _add_common(p: argparse.ArgumentParser) -> None:
    from .attention import ABLATION_MODES
    from .cli import _add_model_args, _add_probe_args

    _add_model_args(p)
    _add_probe_args(p, needles="eval", lengths="1000:4000:4", depths="0:100:5", per_cell=1)
    for action in p._actions:  # the shared --seed means the mask seed here (see the module docstring)
        if "--seed" in action.option_strings:
            action.help = "seed of the random:K mask draw (default: %(default)s)"
    p.add_argument("--needle-seed", type=int, default=42, help="seed of the needle order (default: %(default)s)")
    p.add_argument("--scores", default=None, help="score file for top/random masks: scores.json or a paper file")
    p.add_argument("--ablation", default="zero", choices=sorted(ABLATION_MODES),
                   help="; ".join(f"{m.name}: {m.doc}" for m in ABLATION_MODES.values()))
    p.add_argument("--threshold", type=float, default=0.1, help="retrieval heads score above it (default: 0.1)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--mean-ref-prompts", type=int, default=4, help="ablation mean: haystack windows for the means")
    p.add_argument("--mean-ref-length", type=int, default=1000, help="ablation mean: tokens per window")


def _probe(a):
    from .cli import _probe_config

    return dataclasses.replace(_probe_config(a), seed=a.needle_seed)


def _load(a):
    from .cli import _model_config
    from .models import load_model

    mc = _model_config(a)
    model, tokenizer = load_model(mc.model, device=mc.device, dtype=mc.dtype, device_map=mc.device_map)
    return mc, model, tokenizer


def cmd_niah(a) -> None:
    from .niah import NiahConfig, format_summary, run_niah

    mc, model, tokenizer = _load(a)
    config = NiahConfig(model=mc, probe=_probe(a), mask=a.mask, scores=a.scores, ablation=a.ablation,
                        threshold=a.threshold, mask_seed=a.seed, max_new_tokens=a.max_new_tokens,
                        mean_ref_prompts=a.mean_ref_prompts, mean_ref_length=a.mean_ref_length)
    summary = run_niah(model, tokenizer, config, out=Path(a.out))
    print(format_summary(summary))
    print(f"\nresults in {a.out}/ (samples.jsonl, summary.json, heatmap.png, classes.png)")


def _parse_ks(spec: str) -> list[int]:
    from .cli import parse_ks

    return parse_ks(spec, _DEFAULT_KS, minimum=0)

def cmd_ablate(a) -> None:
    from .ablate import AblateConfig, format_table, run_ablate

    if not a.scores:
        raise RHeadsError("rheads ablate needs --scores: a scores.json from `rheads detect` or a paper score file")
    ks = _parse_ks(a.k)
    mc, model, tokenizer = _load(a)
    config = AblateConfig(model=mc, probe=_probe(a), scores=a.scores, ks=ks, random_seeds=a.random_seeds,
                          mask_seed=a.seed, ablation=a.ablation, threshold=a.threshold,
                          max_new_tokens=a.max_new_tokens, mean_ref_prompts=a.mean_ref_prompts,
                          mean_ref_length=a.mean_ref_length)
    summary = run_ablate(model, tokenizer, config, out=Path(a.out))
    print(format_table(summary))
    print(f"\nresults in {a.out}/ (summary.json, curve.png, classes.png, one NIAH run dir per mask)")


def add_parsers(sub) -> None:
    """Add `niah` and `ablate` to an argparse subparsers object (cli.py's `sub`)."""
    p = sub.add_parser("niah", help="needle-in-a-haystack evaluation, optionally with heads masked",
                       description="NIAH over a lengths x depths grid. --seed is the seed of a random:K mask.")
    _add_common(p)
    p.add_argument("--mask", default="none", help="none, top:K, random:K (outside the retrieval set) or "
                   "heads:16-19,11-15 (layer-head list)")
    p.add_argument("--out", default="runs/niah", help="run directory (rerun the same command to resume)")
    p.set_defaults(func=cmd_niah)

    p = sub.add_parser("ablate", help="NIAH score vs K: top-K retrieval heads masked against K random heads",
                       description="For each K: NIAH with the top-K heads masked and with K random non-retrieval "
                       "heads masked (--random-seeds draws, seeds from --seed). K=0 is the unmasked baseline.")
    _add_common(p)
    p.add_argument("--k", default=_DEFAULT_KS, help="numbers of heads to mask (default: %(default)s)")
    p.add_argument("--random-seeds", type=int, default=3, help="random draws per K (default: %(default)s)")
    p.add_argument("--out", default="runs/ablate", help="run directory (rerun the same command to resume)")
    p.set_defaults(func=cmd_ablate)
