"""What the shard tests of `rheads monitor bench` and `rheads answer` share: the tiny random model of the monitor
and answer tests saved to a directory for the CLI, one unsharded run and n shard runs of a command, and (from
`run_folders`) a folder's files read for comparison with the timings left out. (Named uniquely: tests import it by name.)"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "answer"))

from answer_helpers import HAYSTACK, make_scores, tiny_model, tiny_tokenizer  # noqa: E402,F401
from retrieval_heads.cli.main import main  # noqa: E402
from run_folders import files, record_ids, strip  # noqa: E402,F401


def save_tiny_model(d: Path) -> Path:
    """The tiny model, its tokenizer and scores.json in `d`."""
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    make_scores().save(d / "scores.json")
    return d


def sharded(tmp: Path, args: list[str], n: int = 3) -> tuple[Path, list[Path]]:
    """(the unsharded run's folder, the n shard folders) of `rheads ARGS`."""
    full = tmp / "full"
    assert main([*args, "--out", str(full)]) == 0
    dirs = [tmp / f"s{i}" for i in range(n)]
    for i, d in enumerate(dirs):
        assert main([*args, "--shard", f"{i}/{n}", "--out", str(d)]) == 0
    return full, dirs
