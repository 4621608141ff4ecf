"""What the `rheads` subcommands share: model and probe flags, --k lists, --overwrite, loading, and the guard
that turns user errors into one line.

Left out on purpose: the subcommands themselves (one module per group).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable

from ..config import ModelConfig, ProbeConfig
from ..errors import RHeadsError


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m",
                   help="named offline model (see `rheads models`), hub id, local directory or .gguf file")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ... (default: cpu)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="auto: float32 on CPU, bfloat16 on CUDA")
    p.add_argument("--device-map", default=None, help="passed to from_pretrained, e.g. auto (accelerate)")


def add_probe_args(p: argparse.ArgumentParser, needles: str, lengths: str, depths: str, per_cell: int) -> None:
    p.add_argument("--haystack", default="paul-graham", help="haystack name, a directory of .txt files, or a .txt file")
    p.add_argument("--needles", default=needles, help=f"needle set name or JSONL file (default: {needles})")
    p.add_argument("--lengths", default=lengths,
                   help="prompt lengths in the model's tokens: 1000,2000 or start:stop:count (default: %(default)s)")
    p.add_argument("--depths", default=depths, help="needle depths in percent: 0,50,100 or 0:100:5 (default: %(default)s)")
    p.add_argument("--needles-per-cell", type=int, default=per_cell, help="needles per (length, depth) cell")
    p.add_argument("--template", default="default",
                   help="prompt template: default, paper, or a format string with {context} and {question}")
    add_chat_args(p)
    p.add_argument("--seed", type=int, default=42,
                   help="probe seed: which needle goes in which (length, depth) cell (default: %(default)s)")


def add_chat_args(p: argparse.ArgumentParser) -> None:
    chat = p.add_mutually_exclusive_group()
    chat.add_argument("--chat", dest="chat", action="store_true", default=None, help="force the chat template")
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="never use the chat template")


def add_out_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", default=default, help="run directory (rerun the same command to resume)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete what --out holds and start over (a run made with other settings is refused without it)")


def add_shard_arg(p: argparse.ArgumentParser, units: str = "samples") -> None:
    p.add_argument("--shard", default=None, metavar="I/N",
                   help=f"run only the I-th of N parts of the {units} (I from 0; balanced by token length) into "
                   "--out, a folder of its own; `rheads merge` combines the N folders into the unsharded run's")


# the flags a merge's unsharded pass leaves out, with how many values each takes
SHARD_FREE = {"--shard": 1, "--out": 1, "--overwrite": 0, "--only": 1}  # --only: the merge runs every part


def unsharded_argv(argv: list[str]) -> list[str]:
    """The subcommand's arguments without --shard, --out and --overwrite (the merge gives its own --out)."""
    out, skip = [], 0
    for x in argv:
        if skip:
            skip -= 1
            continue
        name = x.split("=", 1)[0]
        if name in SHARD_FREE:
            skip = SHARD_FREE[name] if "=" not in x else 0
            continue
        out.append(x)
    return out


def finish_shard(a, complete: bool = True) -> None:
    """After a sharded command returned: `--out`/shard-done.json, which `rheads merge` requires of each shard
    (not written while parts of a sweep are missing: `complete` False)."""
    if getattr(a, "shard", None) is None or not complete:
        return
    from pathlib import Path

    from ..cluster.shard import DONE
    from ..io.jsonl import atomic_write_json
    from ..version import FORMAT_VERSION, __version__

    atomic_write_json(Path(a.out) / DONE, {"version": FORMAT_VERSION, "toolkit": __version__, "shard": a.shard,
                                           "command": unsharded_argv(a.argv)})


def parse_ks(spec: str, example: str, minimum: int = 0) -> list[int]:
    """'0,5,10' -> [0, 5, 10]; a one-line error otherwise."""
    try:
        ks = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        ks = []
    if not ks or any(k < minimum for k in ks):
        raise RHeadsError(f"bad --k {spec!r}: write a comma list of whole numbers >= {minimum}, e.g. {example}")
    return ks


def parse_list(spec: str | None) -> list[str] | None:
    """'a, b,c' -> ['a', 'b', 'c']; None stays None (an empty string gives [])."""
    return None if spec is None else [x.strip() for x in spec.split(",") if x.strip()]


def sweep_kwargs(a, command: str, default_ks: str, mask_seed: int) -> dict[str, Any]:
    """The `SweepConfig` fields of a top-K sweep command's flags (one-line errors before any model loads)."""
    if not a.scores:
        raise RHeadsError(f"{command} needs --scores: a scores.json from `rheads detect` or a paper score file")
    return dict(scores=a.scores, ks=parse_ks(a.k, default_ks, minimum=0), random_seeds=a.random_seeds,
                mask_seed=mask_seed, ablation=a.ablation, threshold=a.threshold, controls=parse_list(a.controls))


def model_config(a) -> ModelConfig:
    """The model flags; what --model names is checked at once (a hub id: the cache, then one quick request)."""
    from ..models.loading import check_spec

    check_spec(a.model)
    return ModelConfig(model=a.model, device=a.device, dtype=a.dtype, device_map=a.device_map)


def probe_config(a, **override) -> ProbeConfig:
    from ..probes.grid import parse_grid

    p = ProbeConfig(haystack=a.haystack, needles=a.needles, lengths=parse_grid(a.lengths, "lengths"),
                    depths=parse_grid(a.depths, "depths"), needles_per_cell=a.needles_per_cell,
                    template=a.template, chat=a.chat, seed=a.seed)
    return dataclasses.replace(p, **override)


def load(a):
    """(ModelConfig, model, tokenizer) for the model flags."""
    from ..models.loading import load_model

    mc = model_config(a)
    model, tokenizer = load_model(mc.model, device=mc.device, dtype=mc.dtype, device_map=mc.device_map)
    return mc, model, tokenizer


def run_plan(run: Callable[..., dict], model, tokenizer, config, a, format_table: Callable[[dict], str],
             files: str) -> dict:
    """Run a planned experiment (ablate, kv-sweep, cot-experiment) with the shared --out/--only/--overwrite/
    --batch-size arguments, print its table, a hint naming --only when parts were skipped because other
    processes were writing them, and where the results are."""
    from pathlib import Path

    only = parse_list(a.only)
    summary = run(model, tokenizer, config, out=Path(a.out), only=only, overwrite=a.overwrite,
                  batch_size=a.batch_size)
    print(format_table(summary))
    busy = [m for m in summary.get("missing") or [] if only is None or m in only]  # asked for, skipped as busy
    if busy:
        print(f"\n{len(busy)} parts were being written by other processes sharing {a.out} and were skipped here: "
              "give each process its own parts with --only, and rerun this command once they finish for the "
              "whole summary")
    print(f"\nresults in {a.out}/ ({files})")
    return summary


def guarded(call: Callable[[], Any], prog: str = "rheads") -> int:
    """Run a command: exit status 0, or 2 with a one-line error, or 130 when interrupted (runs resume)."""
    try:
        call()
    except RHeadsError as e:
        from .flags import cli_message

        print(f"{prog}: error: {cli_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; rerun the same command to resume where it stopped", file=sys.stderr)
        return 130
    return 0
