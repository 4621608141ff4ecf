"""The `rheads` command line: one subcommand per capability, thin wrappers over the library.

User errors (`RHeadsError`) print as one line and exit with status 2; Ctrl-C says how to resume.
Left out on purpose: config files; every option is a flag, and the resolved config lands in the run dir.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import RHeadsError


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m",
                   help="named offline model (see `rheads models`), hub id, local directory or .gguf file")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ... (default: cpu)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="auto: float32 on CPU, bfloat16 on CUDA")
    p.add_argument("--device-map", default=None, help="passed to from_pretrained, e.g. auto (accelerate)")


def _add_probe_args(p: argparse.ArgumentParser, needles: str, lengths: str, depths: str, per_cell: int) -> None:
    p.add_argument("--haystack", default="paul-graham", help="haystack name, a directory of .txt files, or a .txt file")
    p.add_argument("--needles", default=needles, help=f"needle set name or JSONL file (default: {needles})")
    p.add_argument("--lengths", default=lengths,
                   help="prompt lengths in the model's tokens: 1000,2000 or start:stop:count (default: %(default)s)")
    p.add_argument("--depths", default=depths, help="needle depths in percent: 0,50,100 or 0:100:5 (default: %(default)s)")
    p.add_argument("--needles-per-cell", type=int, default=per_cell, help="needles per (length, depth) cell")
    p.add_argument("--template", default="default",
                   help="prompt template: default, paper, or a format string with {context} and {question}")
    chat = p.add_mutually_exclusive_group()
    chat.add_argument("--chat", dest="chat", action="store_true", default=None, help="force the chat template")
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="never use the chat template")
    p.add_argument("--seed", type=int, default=42)


def parse_ks(spec: str, example: str, minimum: int = 0) -> list[int]:
    """'0,5,10' -> [0, 5, 10]; a one-line error otherwise."""
    try:
        ks = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        ks = []
    if not ks or any(k < minimum for k in ks):
        raise RHeadsError(f"bad --k {spec!r}: write a comma list of whole numbers >= {minimum}, e.g. {example}")
    return ks


def _model_config(a):
    from .config import ModelConfig

    return ModelConfig(model=a.model, device=a.device, dtype=a.dtype, device_map=a.device_map)


def _probe_config(a):
    from .config import ProbeConfig
    from .prompts import parse_grid

    return ProbeConfig(haystack=a.haystack, needles=a.needles, lengths=parse_grid(a.lengths, "lengths"),
                       depths=parse_grid(a.depths, "depths"), needles_per_cell=a.needles_per_cell,
                       template=a.template, chat=a.chat, seed=a.seed)


def cmd_detect(a) -> None:
    from .config import DetectConfig
    from .detect import detect, format_summary
    from .results import read_jsonl

    config = DetectConfig(model=_model_config(a), probe=_probe_config(a), max_new_tokens=a.max_new_tokens,
                          threshold=a.threshold)
    out = Path(a.out)
    detect(config.model.model, config, out=out)
    import json

    summary = json.loads((out / "summary.json").read_text())
    print(format_summary(summary))
    n = len([r for r in read_jsonl(out / "samples.jsonl") if r.get("type") == "sample"])
    print(f"\n{n} samples in {summary['seconds']:.0f} s of decoding; results in {out}/ "
          "(scores.json, samples.jsonl, heatmap.png, summary.json)")


def cmd_models(a) -> None:
    from .models import format_models_table, list_models

    print(format_models_table(list_models()))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="rheads", description="Find, test and use retrieval heads.")
    parser.add_argument("--version", action="version", version=f"retrieval-heads {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("detect", help="score every attention head with the retrieval score")
    _add_model_args(p)
    _add_probe_args(p, needles="detect", lengths="1000,1500,2000", depths="0:100:5", per_cell=2)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threshold", type=float, default=0.1, help="heads scoring above it are retrieval heads")
    p.add_argument("--out", default="runs/detect", help="run directory (rerun the same command to resume)")
    p.set_defaults(func=cmd_detect)

    from . import cli_niah, cli_report, cli_tasks

    cli_niah.add_parsers(sub)
    cli_report.add_parsers(sub)
    cli_tasks.add_parsers(sub)

    p = sub.add_parser("models", help="the offline models this install can load, and how to get the others")
    p.set_defaults(func=cmd_models)
    return parser


def guarded(call: Callable[[], Any], prog: str = "rheads") -> int:
    """Run a command: exit status 0, or 2 with a one-line error, or 130 when interrupted (runs resume)."""
    try:
        call()
    except RHeadsError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; rerun the same command to resume where it stopped", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
