"""One atlas entry: the per-head mean retrieval scores of one model, with what they were measured on.

An entry is a small JSON file (`format` "rheads-atlas", `version` 1):

    {"format": "rheads-atlas", "version": 1, "name": "smollm2-135m",
     "model": {"name", "family", "num_layers", "num_heads", "num_kv_heads", "params", ...},
     "weights": {"file": "SmolLM2-135M-Instruct.Q4_1.gguf" | null, "sha256": "..." | null},
     "dtype": "float32" | null, "probe": {...the probe config, or what is known of it},
     "n_samples": 48, "tool_version": "retrieval-heads 0.1.0",
     "source": {"kind": "run" | "paper", ...where the scores come from},
     "mean": [[...H floats] x L], "samples": [[...H ints] x L]}

`mean[l][h]` is head (l, h)'s mean score over its `samples[l][h]` counted samples, stored at full float precision
so that ranks and thresholds are those of the source file. `read_entry` / `write_entry` read and write one;
`AtlasEntry.from_paper` derives one from a score file in the paper's `{"layer-head": [per-sample scores]}` format.

Left out on purpose: per-sample scores (an entry is derived data, small enough to ship) and any import of the
rest of the package beyond errors, so that `heads.scores` can read entries without an import circle.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RHeadsError

FORMAT = "rheads-atlas"
VERSION = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
REQUIRED = ("name", "model", "weights", "dtype", "probe", "n_samples", "tool_version", "source", "mean", "samples")


def check_name(name: str) -> str:
    """A valid entry name (what follows `atlas:`), or a one-line error."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RHeadsError(f"atlas entry name {name!r} is not valid: use lower-case letters, digits, '.', '_' and '-' "
                          "(e.g. qwen2.5-coder-1.5b)")
    return name


@dataclass
class AtlasEntry:
    """See the module docstring; `path` is the file it was read from (None for one not yet written)."""

    name: str
    model: dict[str, Any]
    weights: dict[str, Any]
    dtype: str | None
    probe: dict[str, Any] | None
    n_samples: int
    tool_version: str
    source: dict[str, Any]
    mean: np.ndarray  # [L, H] float
    samples: np.ndarray  # [L, H] int
    path: Path | None = field(default=None, compare=False)

    @property
    def num_layers(self) -> int:
        return int(self.mean.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.mean.shape[1])

    @property
    def sha256(self) -> str | None:
        return (self.weights or {}).get("sha256")

    @property
    def kind(self) -> str:
        return str(self.source.get("kind", "?"))

    def source_line(self) -> str:
        """Where the scores come from, in one line."""
        s = self.source
        if s.get("kind") == "paper":
            return f"{s.get('repository')}@{str(s.get('commit'))[:12]}:{s.get('file')}"
        return str(s.get("run") or s.get("kind"))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "name": self.name, "model": self.model, "weights": self.weights,
                "dtype": self.dtype, "probe": self.probe, "n_samples": int(self.n_samples),
                "tool_version": self.tool_version, "source": self.source,
                "mean": [[float(x) for x in row] for row in self.mean],
                "samples": [[int(x) for x in row] for row in self.samples]}


def write_entry(entry: AtlasEntry, path: str | Path) -> Path:
    """Write an entry atomically (temp file + rename); each matrix row on one line, so diffs stay readable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(entry.to_json(), indent=1)
    # indent=1 puts every number on its own line: fold each innermost list of numbers onto one line
    text = re.sub(r"\[\s*(-?[0-9][0-9.eE+-]*(?:,\s*-?[0-9][0-9.eE+-]*)*)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    entry.path = path
    return path


def read_entry(path: str | Path) -> AtlasEntry:
    """Read and check one entry file; one-line errors that name the file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise RHeadsError(f"no atlas entry at {path}") from None
    except json.JSONDecodeError as e:
        raise RHeadsError(f"atlas entry {path} is not valid JSON ({e.msg}, line {e.lineno}): rewrite it with "
                          "`rheads atlas add`") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise RHeadsError(f"{path} is not an atlas entry (no \"format\": \"{FORMAT}\")")
    if not isinstance(raw.get("version"), int) or raw["version"] > VERSION:
        raise RHeadsError(f"atlas entry {path} has version {raw.get('version')!r}; this tool reads up to {VERSION}: "
                          "upgrade retrieval-heads")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise RHeadsError(f"atlas entry {path} lacks {', '.join(missing)}: rewrite it with `rheads atlas add`")
    try:
        mean = np.asarray(raw["mean"], dtype=float)  # [L, H]
        samples = np.asarray(raw["samples"], dtype=int)  # [L, H]
    except (TypeError, ValueError):
        raise RHeadsError(f"atlas entry {path}: mean and samples must be layer x head tables of numbers") from None
    if mean.ndim != 2 or mean.size == 0 or samples.shape != mean.shape:
        raise RHeadsError(f"atlas entry {path}: mean {mean.shape} and samples {samples.shape} must be one "
                          "layer x head shape")
    model = dict(raw["model"] or {})
    dims = (model.get("num_layers"), model.get("num_heads"))
    if dims != mean.shape:
        raise RHeadsError(f"atlas entry {path}: the model is {dims[0]} x {dims[1]} but the scores are "
                          f"{mean.shape[0]} x {mean.shape[1]}")
    return AtlasEntry(name=check_name(raw["name"]), model=model, weights=dict(raw["weights"] or {}),
                      dtype=raw["dtype"], probe=raw["probe"], n_samples=int(raw["n_samples"]),
                      tool_version=str(raw["tool_version"]), source=dict(raw["source"] or {}), mean=mean,
                      samples=samples, path=path)
