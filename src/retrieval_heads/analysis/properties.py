"""The paper's properties of retrieval heads, measured on one run: sparse, dynamic, intrinsic (short vs long).

On a `runs.Run` (a detection run directory or a bare score file):
- `sparsity`: heads above the threshold, their fraction and layers, at two levels: query heads, and KV heads
  (a KV head counts when any query head of its group is a retrieval head; HF's `repeat_kv` order, so KV head
  g serves query heads g*r .. g*r+r-1 with r = heads / kv_heads);
- `dynamic_activation`: per head, the share of counted samples in which it copied at least one token;
  retrieval heads at or above `always_on` (0.9) are "always on", the others context-dependent;
- `length_split`: the counted samples split by length (at the median or a given boundary), scores
  recomputed per subset, and the two score sets compared (`compare.compare`);
- `beyond_window`: for models with sliding-window layers, which retrieval heads sit in full-attention
  vs sliding layers, and which heads copied in samples whose whole answer lies further back than the window.

A bare score file carries no per-sample copies: dynamic activation, the length split and the window
analysis are unavailable (`Run.has_samples` is False and those functions raise a one-line `RHeadsError`
that says so); the KV level needs `num_kv_heads`, which `load_run` takes as an argument for such files.

samples.jsonl is read without modifying it (a torn last line is skipped, not truncated away), so a run
that `rheads detect` is still writing can be measured; without scores.json, scores come from its samples.

Left out on purpose: anything that needs the model (all of this is recomputed from the run's files), and
statistics over seeds (one run is one measurement).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import RHeadsError
from ..heads.masks import kv_mask
from ..heads.scores import HeadScores, scores_from_records
from .compare import compare
from .runs import DEFAULT_THRESHOLD, Run

DEFAULT_ALWAYS_ON = 0.9


def head_key(l: int, h: int) -> str:
    return f"{l}-{h}"


# --------------------------------------------------------------------------------------------- sparse


@dataclass
class Sparsity:
    """Retrieval heads (score > threshold) at the query level and, when the KV heads are known, the KV level."""

    threshold: float
    num_layers: int
    num_heads: int
    n_retrieval: int
    fraction: float
    per_layer: list[int]  # retrieval query heads per layer
    heads: list[str]  # "layer-head", best first
    num_kv_heads: int | None = None
    n_kv_retrieval: int | None = None  # KV heads (layer, group) with at least one retrieval query head
    kv_fraction: float | None = None
    per_layer_kv: list[int] | None = None
    kv_heads: list[str] | None = None  # "layer-kvhead"

    @property
    def layers(self) -> list[int]:
        """Layers that hold at least one retrieval head."""
        return [l for l, n in enumerate(self.per_layer) if n]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "layers": self.layers, "n_heads": self.num_layers * self.num_heads,
                "n_kv_heads": None if self.num_kv_heads is None else self.num_layers * self.num_kv_heads}


def sparsity(scores: HeadScores | np.ndarray, threshold: float = DEFAULT_THRESHOLD,
             num_kv_heads: int | None = None) -> Sparsity:
    m = scores.mean() if isinstance(scores, HeadScores) else np.asarray(scores, dtype=float)
    L, H = m.shape
    mask = m > threshold
    order = sorted(zip(*np.nonzero(mask)), key=lambda lh: (-m[lh], lh))
    s = Sparsity(threshold=threshold, num_layers=L, num_heads=H, n_retrieval=int(mask.sum()),
                 fraction=float(mask.mean()) if mask.size else 0.0, per_layer=[int(x) for x in mask.sum(1)],
                 heads=[head_key(int(l), int(h)) for l, h in order])
    if num_kv_heads:
        kv = kv_mask(mask, num_kv_heads)
        s.num_kv_heads = int(num_kv_heads)
        s.n_kv_retrieval = int(kv.sum())
        s.kv_fraction = float(kv.mean())
        s.per_layer_kv = [int(x) for x in kv.sum(1)]
        s.kv_heads = [head_key(int(l), int(g)) for l, g in zip(*np.nonzero(kv))]
    return s


# -------------------------------------------------------------------------------------------- dynamic


def _require_samples(run: Run, what: str) -> list[dict]:
    if not run.has_samples:
        raise RHeadsError(f"{run.name}: {what} needs per-sample copies (samples.jsonl of `rheads detect`); "
                          "a bare score file has none")
    counted = run.counted
    if not counted:
        raise RHeadsError(f"{run.name}: no counted samples (ROUGE-1 recall > 0.5), so {what} is undefined")
    return counted


def activation_frequency(records: list[dict], num_layers: int, num_heads: int) -> np.ndarray:
    """[L, H] share of the counted samples in which a head copied at least one token (copies > 0)."""
    counted = [r for r in records if r.get("counted")]
    act = np.zeros((num_layers, num_heads))
    for r in counted:
        for key, n in r["copies"].items():
            if n > 0:
                l, h = (int(x) for x in key.split("-"))
                act[l, h] += 1
    return act / len(counted) if counted else act


@dataclass
class Activation:
    """Dynamic activation of the retrieval heads: always on (frequency >= always_on) or context-dependent."""

    threshold: float
    always_on: float
    n_counted: int
    n_retrieval: int
    n_always_on: int
    n_context_dependent: int
    always_on_heads: list[str]
    context_dependent_heads: list[str]
    frequency: dict[str, float]  # every head's activation frequency, "layer-head" -> share

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matrix(self, num_layers: int, num_heads: int) -> np.ndarray:
        m = np.zeros((num_layers, num_heads))
        for k, v in self.frequency.items():
            l, h = (int(x) for x in k.split("-"))
            m[l, h] = v
        return m


def dynamic_activation(run: Run, threshold: float | None = None, always_on: float = DEFAULT_ALWAYS_ON) -> Activation:
    thr = run.threshold if threshold is None else threshold
    counted = _require_samples(run, "dynamic activation")
    L, H = run.scores.num_layers, run.scores.num_heads
    freq = activation_frequency(counted, L, H)
    mean = run.scores.mean()
    retrieval = sorted(zip(*np.nonzero(mean > thr)), key=lambda lh: (-mean[lh], lh))
    on = [lh for lh in retrieval if freq[lh] >= always_on]
    dep = [lh for lh in retrieval if freq[lh] < always_on]
    return Activation(threshold=thr, always_on=always_on, n_counted=len(counted), n_retrieval=len(retrieval),
                      n_always_on=len(on), n_context_dependent=len(dep),
                      always_on_heads=[head_key(int(l), int(h)) for l, h in on],
                      context_dependent_heads=[head_key(int(l), int(h)) for l, h in dep],
                      frequency={head_key(l, h): round(float(freq[l, h]), 6) for l in range(L) for h in range(H)})


# ----------------------------------------------------------------------------------- intrinsic: length


def _length(r: dict) -> float:
    return float(r.get("length", r.get("prompt_length", 0)))


@dataclass
class LengthSplit:
    """A run's counted samples split by length: short = length <= boundary, long = length > boundary."""

    boundary: float
    rule: str  # "median" or "given"
    n_short: int
    n_long: int
    short: HeadScores
    long: HeadScores
    comparison: dict[str, Any]  # compare.compare(short, long)

    def to_dict(self) -> dict[str, Any]:
        """The split and the comparison's numbers (not the per-sample scores)."""
        return {"boundary": self.boundary, "rule": self.rule, "n_short": self.n_short, "n_long": self.n_long,
                **self.comparison}


def length_split(run: Run, boundary: float | None = None, threshold: float | None = None,
                 ks: tuple[int, ...] = (5, 10, 20, 50)) -> LengthSplit:
    """Split at `boundary` (default: the median length of the counted samples) and compare the two halves."""
    thr = run.threshold if threshold is None else threshold
    counted = _require_samples(run, "the short/long split")
    lengths = np.array([_length(r) for r in counted])
    rule = "given" if boundary is not None else "median"
    b = float(np.median(lengths)) if boundary is None else float(boundary)
    short = [r for r, n in zip(counted, lengths) if n <= b]
    long = [r for r, n in zip(counted, lengths) if n > b]
    if not short or not long:
        raise RHeadsError(f"{run.name}: splitting at length {b:g} leaves one side empty (counted lengths "
                          f"{lengths.min():g}..{lengths.max():g}); give a boundary in between, or probe more lengths")
    L, H = run.scores.num_layers, run.scores.num_heads
    s, lg = scores_from_records(short, L, H), scores_from_records(long, L, H)
    return LengthSplit(boundary=b, rule=rule, n_short=len(short), n_long=len(long), short=s, long=lg,
                       comparison=compare(s, lg, ks=ks, threshold=thr))


# ----------------------------------------------------------------------------------- intrinsic: window


@dataclass
class BeyondWindow:
    """Retrieval beyond the sliding window: only full-attention heads can copy from that far back."""

    sliding_window: int
    sliding_layers: list[int]
    full_layers: list[int]
    retrieval_full: list[str]  # retrieval heads in full-attention layers
    retrieval_sliding: list[str]  # retrieval heads in sliding-window layers
    n_counted: int
    n_far: int  # counted samples whose whole answer span lies >= window tokens before the prompt's end
    copied_far: dict[str, int]  # head -> far samples in which it copied, best first
    n_heads_copying_far_full: int
    n_heads_copying_far_sliding: int  # 0 by construction: a nonzero count flags a capture or mask bug
    retrieval_full_copying_far: list[str]  # retrieval heads (full layers) that copied in a far sample

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_far(r: dict, window: int) -> bool:
    """Every answer token is out of reach of a window at the last prompt position (query q sees keys k with
    q - k < window, the Gemma 3 / Mistral mask), hence of every later decoding position too."""
    return r["prompt_length"] - r["answer_span"][1] >= window


def beyond_window(run: Run, threshold: float | None = None) -> BeyondWindow | None:
    """None when the model has no sliding-window layer; needs samples for the far-sample part."""
    flags = run.sliding_layers()
    if flags is None:
        return None
    thr = run.threshold if threshold is None else threshold
    window = int(run.model["sliding_window"])
    mean = run.scores.mean()
    L, H = mean.shape
    flags = (flags + [False] * L)[:L]
    retrieval = sorted(zip(*np.nonzero(mean > thr)), key=lambda lh: (-mean[lh], lh))
    counted = _require_samples(run, "retrieval beyond the sliding window")
    far = [r for r in counted if is_far(r, window)]
    copied: dict[tuple[int, int], int] = {}
    for r in far:
        for key, n in r["copies"].items():
            if n > 0:
                l, h = (int(x) for x in key.split("-"))
                copied[(l, h)] = copied.get((l, h), 0) + 1
    ranked = sorted(copied.items(), key=lambda kv: (-kv[1], kv[0]))
    return BeyondWindow(
        sliding_window=window,
        sliding_layers=[l for l in range(L) if flags[l]],
        full_layers=[l for l in range(L) if not flags[l]],
        retrieval_full=[head_key(int(l), int(h)) for l, h in retrieval if not flags[l]],
        retrieval_sliding=[head_key(int(l), int(h)) for l, h in retrieval if flags[l]],
        n_counted=len(counted), n_far=len(far),
        copied_far={head_key(l, h): n for (l, h), n in ranked},
        n_heads_copying_far_full=sum(1 for (l, _), _n in ranked if not flags[l]),
        n_heads_copying_far_sliding=sum(1 for (l, _), _n in ranked if flags[l]),
        retrieval_full_copying_far=[head_key(int(l), int(h)) for l, h in retrieval
                                    if not flags[l] and (l, h) in copied],
    )


# ------------------------------------------------------------------------------------------ one place


@dataclass
class PropertiesConfig:
    """How the properties are measured; written into report.json."""

    threshold: float | None = None  # None: each run's own detect threshold (0.1 by default)
    always_on: float = DEFAULT_ALWAYS_ON
    split_length: float | None = None  # None: the median length of each run's counted samples
    ks: list[int] = field(default_factory=lambda: [5, 10, 20, 50])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(run: Run, config: PropertiesConfig | None = None) -> dict[str, Any]:
    """Every property of one run as a JSON-ready dict; what cannot be measured says why under `unavailable`."""
    cfg = config or PropertiesConfig()
    thr = run.threshold if cfg.threshold is None else cfg.threshold
    mean = run.scores.mean()
    best = run.scores.ranked()[0] if mean.size else ((0, 0), 0.0)
    out: dict[str, Any] = {
        "name": run.name, "source": run.source, "model": run.model_name, "family": run.family,
        "num_layers": run.scores.num_layers, "num_heads": run.scores.num_heads, "num_kv_heads": run.num_kv_heads,
        "n_samples": len(run.records) if run.has_samples else None,
        "n_counted": len(run.counted) if run.has_samples else run.scores.n_samples,
        "threshold": thr, "top_head": head_key(*best[0]), "top_score": round(best[1], 6),
        "sparsity": sparsity(run.scores, thr, run.num_kv_heads).to_dict(),
        "unavailable": {},
    }
    if run.num_kv_heads is None:
        out["unavailable"]["kv_level"] = "num_kv_heads unknown (bare score file): pass --kv-heads"
    for key, fn in (("activation", lambda: dynamic_activation(run, thr, cfg.always_on).to_dict()),
                    ("length_split", lambda: length_split(run, cfg.split_length, thr, tuple(cfg.ks)).to_dict()),
                    ("beyond_window", lambda: _window_dict(beyond_window(run, thr)))):
        try:
            out[key] = fn()
        except RHeadsError as e:
            out[key] = None
            out["unavailable"][key] = str(e)
    if out.get("beyond_window") is None and "beyond_window" not in out["unavailable"]:
        out["unavailable"]["beyond_window"] = "no sliding-window layers"
    return out


def _window_dict(w: BeyondWindow | None) -> dict[str, Any] | None:
    return None if w is None else w.to_dict()
