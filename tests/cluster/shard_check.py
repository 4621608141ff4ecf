"""What the shard tests of `rheads monitor bench` and `rheads answer` share: the tiny random model of the monitor
and answer tests saved to a directory for the CLI, one unsharded run and n shard runs of a command, and a folder's
files read for comparison with the timings left out. (Named uniquely: tests import it by name.)"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "answer"))

from answer_helpers import HAYSTACK, make_scores, tiny_model, tiny_tokenizer  # noqa: E402,F401
from retrieval_heads.cli.main import main  # noqa: E402


def save_tiny_model(d: Path) -> Path:
    """The tiny model, its tokenizer and scores.json in `d`."""
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    make_scores().save(d / "scores.json")
    return d


def strip(o, drop: set[str]):
    if isinstance(o, dict):
        return {k: strip(v, drop) for k, v in o.items() if k not in drop}
    if isinstance(o, list):
        return [strip(v, drop) for v in o]
    return o


def files(root: Path, drop: set[str]) -> dict[str, object]:
    """Every file under root: JSON and JSONL parsed without the keys in `drop`, .npz as their arrays (the zip
    entries carry their write time), other files as bytes."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        if p.is_dir() or p.name == ".lock":
            continue
        rel = str(p.relative_to(root))
        if p.suffix == ".jsonl":
            out[rel] = [strip(json.loads(line), drop) for line in p.read_text().splitlines()]
        elif p.suffix == ".json":
            out[rel] = strip(json.loads(p.read_text()), drop)
        elif p.suffix == ".npz":
            with np.load(io.BytesIO(p.read_bytes())) as z:
                out[rel] = {k: (z[k].dtype.str, z[k].shape, z[k].tobytes()) for k in sorted(z.files)}
        else:
            out[rel] = p.read_bytes()
    return out


def sharded(tmp: Path, args: list[str], n: int = 3) -> tuple[Path, list[Path]]:
    """(the unsharded run's folder, the n shard folders) of `rheads ARGS`."""
    full = tmp / "full"
    assert main([*args, "--out", str(full)]) == 0
    dirs = [tmp / f"s{i}" for i in range(n)]
    for i, d in enumerate(dirs):
        assert main([*args, "--shard", f"{i}/{n}", "--out", str(d)]) == 0
    return full, dirs


def record_ids(path: Path) -> list[str]:
    return [r["id"] for r in map(json.loads, path.read_text().splitlines()) if r.get("type") != "header"]
