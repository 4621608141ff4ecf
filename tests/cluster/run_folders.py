"""Run folders read for comparison, shared by the shard tests: every file, JSON and JSONL parsed without the
timing keys, .npz as their arrays (the zip entries carry their write time), other files as bytes; and the record
ids of a JSONL file. (Named uniquely: tests import it by name.)"""

from __future__ import annotations

import io
import json
from pathlib import Path

TIMINGS = frozenset({"seconds"})


def strip(o, drop=TIMINGS):
    if isinstance(o, dict):
        return {k: strip(v, drop) for k, v in o.items() if k not in drop}
    if isinstance(o, list):
        return [strip(v, drop) for v in o]
    return o


def files(root: Path, drop=TIMINGS, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """Every file under root but `.lock` and those under the top-level folders `skip`, read for comparison."""
    import numpy as np

    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_dir() or p.name == ".lock" or rel.parts[0] in skip:
            continue
        if p.suffix == ".jsonl":
            out[str(rel)] = [strip(json.loads(line), drop) for line in p.read_text().splitlines()]
        elif p.suffix == ".json":
            out[str(rel)] = strip(json.loads(p.read_text()), drop)
        elif p.suffix == ".npz":
            with np.load(io.BytesIO(p.read_bytes())) as z:
                out[str(rel)] = {k: (z[k].dtype.str, z[k].shape, z[k].tobytes()) for k in sorted(z.files)}
        else:
            out[str(rel)] = p.read_bytes()
    return out


def record_ids(path: Path) -> list[str]:
    return [r["id"] for r in map(json.loads, path.read_text().splitlines()) if r.get("type") != "header"]
