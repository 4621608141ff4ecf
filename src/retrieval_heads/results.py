"""Head scores and run files: the paper's `{"layer-head": [per-sample scores]}` format, and JSONL records.

`HeadScores` holds per-sample retrieval scores per head; it reads and writes the paper's score files, so the
published files of Wu et al. load as input. JSONL writers flush every record, so a killed run loses at
most the sample in flight, and `read_jsonl` skips a torn last line.

Left out on purpose: any database or binary format; the paper format carries no config (a sibling
`config.json` does).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import RHeadsError

FORMAT_VERSION = 1


@dataclass
class HeadScores:
    """Per-sample retrieval scores of every (layer, head); `mean()` is the head's retrieval score."""

    num_layers: int
    num_heads: int
    per_sample: dict[tuple[int, int], list[float]] = field(default_factory=dict)

    @classmethod
    def empty(cls, num_layers: int, num_heads: int) -> "HeadScores":
        return cls(num_layers, num_heads, {(l, h): [] for l in range(num_layers) for h in range(num_heads)})

    def add_sample(self, scores: np.ndarray) -> None:
        """Append one counted sample's [L, H] scores."""
        for (l, h), lst in self.per_sample.items():
            lst.append(float(scores[l, h]))

    @property
    def n_samples(self) -> int:
        return max((len(v) for v in self.per_sample.values()), default=0)

    def mean(self) -> np.ndarray:
        """[L, H] mean score over counted samples (0 where a head has none)."""
        m = np.zeros((self.num_layers, self.num_heads))
        for (l, h), v in self.per_sample.items():
            m[l, h] = float(np.mean(v)) if v else 0.0
        return m

    def ranked(self) -> list[tuple[tuple[int, int], float]]:
        """All heads, best first (ties by layer, head)."""
        m = self.mean()
        heads = [(l, h) for l in range(self.num_layers) for h in range(self.num_heads)]
        return sorted(((lh, float(m[lh])) for lh in heads), key=lambda x: (-x[1], x[0]))

    def top(self, k: int) -> list[tuple[int, int]]:
        return [lh for lh, _ in self.ranked()[:k]]

    def above(self, threshold: float = 0.1) -> list[tuple[int, int]]:
        return [lh for lh, s in self.ranked() if s > threshold]

    # --- the paper's format
    def to_paper(self) -> dict[str, list[float]]:
        return {f"{l}-{h}": list(v) for (l, h), v in sorted(self.per_sample.items())}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_paper())

    @classmethod
    def load(cls, path: str | Path) -> "HeadScores":
        path = Path(path)
        if path.is_dir():
            path = path / "scores.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise RHeadsError(f"no score file at {path}: pass a scores.json from `rheads detect` or the paper") from None
        except json.JSONDecodeError as e:
            raise RHeadsError(f"{path} is not valid JSON ({e.msg}, line {e.lineno}): pass a head-score file") from None
        return cls.from_paper(raw, source=str(path))

    @classmethod
    def from_paper(cls, raw: Any, source: str = "scores") -> "HeadScores":
        if not isinstance(raw, dict) or not raw:
            raise RHeadsError(f'{source} is not a head-score file: expected {{"layer-head": [scores, ...]}}')
        per: dict[tuple[int, int], list[float]] = {}
        for key, val in raw.items():
            try:
                l, h = (int(x) for x in str(key).split("-"))
            except ValueError:
                raise RHeadsError(f"{source}: key '{key}' is not 'layer-head' (e.g. '16-19')") from None
            vals = val if isinstance(val, list) else [val]
            # published files hold floats; tolerate [score, ...] items by taking the score
            per[(l, h)] = [float(v[0] if isinstance(v, list) else v) for v in vals]
        L = 1 + max(l for l, _ in per)
        H = 1 + max(h for _, h in per)
        for l in range(L):
            for h in range(H):
                per.setdefault((l, h), [])
        return cls(L, H, per)


def scores_from_records(records: list[dict], num_layers: int, num_heads: int) -> HeadScores:
    """Per-sample scores (copies / span length) of the counted samples of a detection run, in grid order."""
    scores = HeadScores.empty(num_layers, num_heads)
    for r in records:
        if not r.get("counted"):
            continue
        m = np.zeros((num_layers, num_heads))
        for key, n in r["copies"].items():
            l, h = (int(x) for x in key.split("-"))
            m[l, h] = n / r["span_len"]
        scores.add_sample(m)
    return scores


def parse_heads(spec: str) -> list[tuple[int, int]]:
    """'16-19,11-15' -> [(16, 19), (11, 15)]."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        try:
            l, h = (int(x) for x in part.split("-"))
        except ValueError:
            raise RHeadsError(f"bad head '{part}': write heads as layer-head, comma separated, e.g. 16-19,11-15") from None
        out.append((l, h))
    return out


def atomic_write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_default))
    os.replace(tmp, path)


def _default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)}")


def claim_run_dir(out: str | Path, meta: dict, *, keys: tuple[str, ...] = ("config",)) -> Path:
    """Create or reuse a run directory: refuse one whose config.json differs from `meta` in any of `keys`,
    then write `meta` as its config.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        for key in keys:
            if old.get(key) != meta.get(key):
                what = key.replace("_sha", "").replace("_", " ")
                raise RHeadsError(f"{out} holds a run with a different {what}: pass another --out, or delete it "
                                  "to start over")
    atomic_write_json(path, meta)
    return out


def open_run(out: str | Path, meta: dict, *, keys: tuple[str, ...], jsonl: str,
             kind: str) -> tuple[dict[str, dict], "JsonlWriter"]:
    """Create or resume a run directory.

    Refuses a directory whose config.json differs from `meta` in any of `keys`, writes config.json, and
    returns the records of type `kind` already in `jsonl` (by id) with a writer that appends to it (a new
    file starts with a header holding the version and `keys`).
    """
    out = claim_run_dir(out, meta, keys=keys)
    records = read_jsonl(out / jsonl)
    writer = JsonlWriter(out / jsonl)
    if not records:
        writer.write({"type": "header", "version": meta.get("version", FORMAT_VERSION),
                      **{k: meta.get(k) for k in keys}})
    return {r["id"]: r for r in records if r.get("type") == kind}, writer


class JsonlWriter:
    """Append-only JSONL, flushed and fsynced after every record."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, default=_default) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (a killed write) is dropped and truncated away."""
    path = Path(path)
    if not path.exists():
        return []
    records, good_bytes = [], 0
    with open(path, "rb") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good_bytes += len(line)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return records


def iter_records(records: Iterable[dict], kind: str) -> list[dict]:
    return [r for r in records if r.get("type") == kind]
