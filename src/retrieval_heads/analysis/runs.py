"""One score set with what its run directory knows about it: `load_run(path)` reads a run directory of
`rheads detect` (config.json, samples.jsonl, scores.json) or a bare paper-format score file into a `Run`.

A bare score file carries no per-sample copies (`Run.has_samples` is False) and no model shape beyond its
layers x heads; `load_run` takes `num_kv_heads` for it. samples.jsonl is read without modifying it, so a run
that `rheads detect` is still writing can be measured; without scores.json, scores come from its samples.

Left out on purpose: measuring anything (`properties.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RHeadsError
from ..heads.scores import HeadScores, scores_from_records
from ..io.jsonl import of_type, read_jsonl

DEFAULT_THRESHOLD = 0.1


@dataclass
class Run:
    """One score set with whatever the run directory knows about it."""

    name: str
    source: str  # the directory or score file it came from
    scores: HeadScores
    model: dict[str, Any] = field(default_factory=dict)  # config.json "model": family, num_kv_heads, ...
    config: dict[str, Any] = field(default_factory=dict)  # config.json "config": the DetectConfig
    records: list[dict] | None = None  # sample records of samples.jsonl; None for a bare score file
    toolkit: str | None = None  # toolkit version that wrote the run

    @property
    def has_samples(self) -> bool:
        return self.records is not None

    @property
    def counted(self) -> list[dict]:
        return [r for r in (self.records or []) if r.get("counted")]

    @property
    def num_kv_heads(self) -> int | None:
        return self.model.get("num_kv_heads")

    @property
    def family(self) -> str:
        return self.model.get("family") or "unknown"

    @property
    def threshold(self) -> float:
        return float(self.config.get("threshold", DEFAULT_THRESHOLD))

    @property
    def model_name(self) -> str:
        return (self.config.get("model") or {}).get("model") or self.model.get("name_or_path") or self.name

    def sliding_layers(self) -> list[bool] | None:
        """Per layer, whether it attends within a sliding window; None when the model has no such layer."""
        return sliding_layers(self.model, self.scores.num_layers)


def sliding_layers(model: dict[str, Any], num_layers: int) -> list[bool] | None:
    """From config.json's "model": `layer_types` when present, else every layer when `sliding_window` is set."""
    window = model.get("sliding_window")
    types = model.get("layer_types")
    if not window:
        return None
    if types:
        flags = [t == "sliding_attention" for t in types][:num_layers]
    else:  # Mistral-style: one window for every layer
        flags = [True] * num_layers
    return flags if any(flags) else None


def read_samples(path: Path) -> list[dict]:
    """Sample records of a samples.jsonl (read-only: a run still being written can be measured)."""
    return of_type(read_jsonl(path), "sample")


def load_run(path: str | Path, *, name: str | None = None, num_kv_heads: int | None = None) -> Run:
    """A run directory of `rheads detect`, or a paper-format score file (then `num_kv_heads` may be given)."""
    from ..atlas.store import find_entry, is_atlas_spec

    if is_atlas_spec(str(path)):  # an atlas entry: its per-head means and the model it was made on
        entry = find_entry(str(path))
        return Run(name or entry.name, str(path), HeadScores.load(str(path)), model=dict(entry.model))
    path = Path(path)
    if not path.exists():
        raise RHeadsError(f"{path} does not exist: pass a run directory of `rheads detect` or a scores.json")
    if path.is_file():
        if path.name == "scores.json" and (path.parent / "config.json").exists():  # a run dir's own score file
            return load_run(path.parent, name=name, num_kv_heads=num_kv_heads)
        run = Run(name or path.stem, str(path), HeadScores.load(path))
    else:
        cfg_path, samples_path, scores_path = path / "config.json", path / "samples.jsonl", path / "scores.json"
        if not cfg_path.exists() and not scores_path.exists():
            raise RHeadsError(f"{path} holds neither config.json nor scores.json: pass a run directory of "
                              "`rheads detect` or a scores.json")
        meta: dict[str, Any] = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        model = dict(meta.get("model") or {})
        records = read_samples(samples_path) if samples_path.exists() else None
        if scores_path.exists():
            scores = HeadScores.load(scores_path)
        elif records is not None and model.get("num_layers") and model.get("num_heads"):
            scores = scores_from_records(records, model["num_layers"], model["num_heads"])
        else:
            raise RHeadsError(f"{path} has no scores.json and no samples to compute them from: finish or rerun "
                              "`rheads detect` there")
        run = Run(name or path.name, str(path), scores, model=model, config=dict(meta.get("config") or {}),
                  records=records, toolkit=meta.get("toolkit"))
    if num_kv_heads is not None:
        run.model["num_kv_heads"] = int(num_kv_heads)
    kv = run.num_kv_heads
    if kv is not None and (kv < 1 or run.scores.num_heads % kv):
        raise RHeadsError(f"{run.name}: {run.scores.num_heads} query heads cannot be grouped into {kv} KV heads: "
                          "pass the model's num_key_value_heads")
    return run
