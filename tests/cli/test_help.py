"""`rheads --help` and every `rheads <command> --help` import neither torch nor transformers (so help is fast)."""

from __future__ import annotations

import json
import subprocess
import sys

WALK = r"""
import argparse, contextlib, io, json, sys
from retrieval_heads.cli.main import build_parser

def commands(parser, prefix=()):
    yield list(prefix)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*prefix, name))

heavy = {}
for argv in commands(build_parser()):
    with contextlib.redirect_stdout(io.StringIO()) as text:
        try:
            build_parser().parse_args([*argv, "--help"])
        except SystemExit:
            pass
    assert "usage: rheads" in text.getvalue(), argv
    heavy[" ".join(argv)] = [m for m in ("torch", "transformers") if m in sys.modules]
print(json.dumps(heavy))
"""


def test_help_of_every_command_imports_neither_torch_nor_transformers():
    r = subprocess.run([sys.executable, "-c", WALK], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    heavy = json.loads(r.stdout.splitlines()[-1])
    assert {"", "detect", "niah", "ablate", "eval", "cot-experiment", "monitor", "monitor bench"} <= set(heavy)
    assert {cmd: mods for cmd, mods in heavy.items() if mods} == {}
