"""Where atlas entries live, and finding one by name: `atlas:NAME` anywhere a scores.json is taken.

Two folders, both read on every lookup:
- shipped: `retrieval_heads/atlas/data/*.json`, installed with the package (our detection runs of the named
  models, and the paper's published head scores as per-head means);
- the user's: `$RHEADS_ATLAS` when set, else `<cache>/atlas/` under the model cache root (`$RHEADS_CACHE`,
  default ~/.cache/retrieval-heads), where `rheads atlas add` writes.

A name is unique across both: `find_entry` refuses a name that both folders hold with other scores rather than
pick one (the same scores twice, e.g. a run added before it shipped, read as the shipped entry).

Left out on purpose: building entries (`build.py`), matching them to a model (`match.py`), and any network.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import RHeadsError
from ..models.cache import cache_root
from .entry import AtlasEntry, check_name, read_entry

PREFIX = "atlas:"
ATLAS_ENV = "RHEADS_ATLAS"
SHIPPED_DIR = Path(__file__).resolve().parent / "data"


def is_atlas_spec(spec) -> bool:
    """Whether a scores argument names an atlas entry (`atlas:NAME`) rather than a file."""
    return isinstance(spec, (str, os.PathLike)) and str(spec).startswith(PREFIX)


def user_dir() -> Path:
    """The user's atlas folder: $RHEADS_ATLAS, else <model cache root>/atlas (it need not exist yet)."""
    env = os.environ.get(ATLAS_ENV)
    return Path(env).expanduser() if env else cache_root(None) / "atlas"


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def list_entries() -> list[AtlasEntry]:
    """Every entry, shipped first, each folder in name order."""
    return [read_entry(p) for folder in (SHIPPED_DIR, user_dir()) for p in _files(folder)]


def entry_path(name: str, folder: Path) -> Path:
    return folder / f"{check_name(name)}.json"


def find_entry(spec: str) -> AtlasEntry:
    """The entry `atlas:NAME` (or a bare NAME) names; one line listing the known names when there is none."""
    name = str(spec)[len(PREFIX):] if is_atlas_spec(spec) else str(spec)
    if not name:
        raise RHeadsError("atlas: needs an entry name, e.g. atlas:smollm2-135m; list them with `rheads atlas list`")
    check_name(name)
    hits = [p for p in (entry_path(name, SHIPPED_DIR), entry_path(name, user_dir())) if p.is_file()]
    if len(hits) > 1:
        shipped, user = read_entry(hits[0]), read_entry(hits[1])
        if not (np.array_equal(shipped.mean, user.mean) and np.array_equal(shipped.samples, user.samples)
                and shipped.sha256 == user.sha256):
            raise RHeadsError(f"atlas:{name} is both a shipped entry and {hits[1]}, with other scores: rename or "
                              "delete the latter")
        hits = hits[:1]
    if not hits:
        known = [p.stem for folder in (SHIPPED_DIR, user_dir()) for p in _files(folder)]
        raise RHeadsError(f"no atlas entry named {name!r} (known: {', '.join(known) or 'none'}): see "
                          "`rheads atlas list`, or register a detection run with `rheads atlas add RUN_DIR`")
    entry = read_entry(hits[0])
    if entry.name != name:
        raise RHeadsError(f"atlas entry {hits[0]} is named {entry.name!r} inside: rename the file or the entry")
    return entry
