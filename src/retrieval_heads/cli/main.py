"""The `rheads` command line: one subcommand per capability, thin wrappers over the library.

User errors (`RHeadsError`) print as one line and exit with status 2; Ctrl-C says how to resume. Each group
of subcommands lives in its own module (`detect.py`, `niah.py`, `tasks.py`, `report.py`, `intrinsic.py`) with
an `add_parsers(sub)`; heavy imports happen inside the handlers, so `rheads --help` stays fast.

Left out on purpose: config files; every option is a flag, and the resolved config lands in the run dir.
"""

from __future__ import annotations

import argparse
import sys

from ..version import __version__
from . import answer, atlas, cluster, detect, intrinsic, kv, launch, monitor, niah, report, suite, tasks
from .common import guarded

GROUPS = (detect, niah, tasks, report, intrinsic, kv, monitor, atlas, answer, suite, cluster, launch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rheads", description="Find, test and use retrieval heads.")
    parser.add_argument("--version", action="version", version=f"retrieval-heads {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    _no_abbrev(parser)  # a shard records its flags as typed: `--sh`/`--ou` must not pass for --shard/--out
    return parser


def _no_abbrev(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in action.choices.values():
                _no_abbrev(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a shard records its command for `rheads merge`
    args.cli, args.build_parser = main, build_parser  # merge and launch run subcommands (no import back here)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
