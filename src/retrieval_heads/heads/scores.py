"""Head scores in the paper's `{"layer-head": [per-sample scores]}` format.

`HeadScores` holds per-sample retrieval scores per head; it reads and writes the paper's score files, so the
published files of Wu et al. load as input. `HeadScores.load("atlas:NAME")` reads an atlas entry instead (see
`retrieval_heads.atlas`): per-head means only, each kept as a one-item list with its sample count in `counts`.
`scores_from_records` rebuilds them from a detection run's sample records; `parse_heads` reads "16-19,11-15".

Left out on purpose: any config inside the score file (the paper format has none; a sibling config.json
holds it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RHeadsError
from ..io.jsonl import atomic_write_json


@dataclass
class HeadScores:
    """Per-sample retrieval scores of every (layer, head); `mean()` is the head's retrieval score."""

    num_layers: int
    num_heads: int
    per_sample: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    # for scores known only as per-head means (an atlas entry): each list holds the mean, this the samples behind it
    counts: dict[tuple[int, int], int] | None = None
    source: str | None = field(default=None, compare=False)  # "atlas:NAME" when read from the atlas

    @classmethod
    def empty(cls, num_layers: int, num_heads: int) -> "HeadScores":
        return cls(num_layers, num_heads, {(l, h): [] for l in range(num_layers) for h in range(num_heads)})

    def add_sample(self, scores: np.ndarray) -> None:
        """Append one counted sample's [L, H] scores."""
        if self.counts is not None:
            raise RHeadsError(f"{self.source or 'these scores'} hold per-head means only: no sample can be added")
        for (l, h), lst in self.per_sample.items():
            lst.append(float(scores[l, h]))

    @property
    def n_samples(self) -> int:
        if self.counts is not None:
            return max(self.counts.values(), default=0)
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
        """The paper's format (for means-only scores: one value, the mean, per head)."""
        return {f"{l}-{h}": list(v) for (l, h), v in sorted(self.per_sample.items())}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_paper())

    @classmethod
    def load(cls, path: str | Path) -> "HeadScores":
        """A scores.json (or its run dir), a paper score file, or `atlas:NAME` (an atlas entry)."""
        if str(path).startswith("atlas:"):
            return cls.from_atlas(str(path))
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
    def from_atlas(cls, spec: str) -> "HeadScores":
        """The per-head means of the atlas entry `atlas:NAME` (`counts`: each head's samples)."""
        from ..atlas.store import find_entry

        e = find_entry(spec)
        heads = [(l, h) for l in range(e.num_layers) for h in range(e.num_heads)]
        return cls(e.num_layers, e.num_heads, {lh: [float(e.mean[lh])] for lh in heads},
                   counts={lh: int(e.samples[lh]) for lh in heads}, source=f"atlas:{e.name}")

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
            try:
                per[(l, h)] = [float(v[0] if isinstance(v, list) else v) for v in vals]
            except (TypeError, ValueError, IndexError):
                raise RHeadsError(f"{source}: head '{key}' has a value that is not a number ({str(val)[:40]}): "
                                  "a head-score file maps 'layer-head' to a list of per-sample scores") from None
            if l < 0 or h < 0:
                raise RHeadsError(f"{source}: key '{key}' names a negative layer or head")
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
