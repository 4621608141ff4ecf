"""Mask specs: which attention heads to ablate, as a list of (layer, head) and as `{layer: [heads]}`.

A spec is one of
- `none` (or empty): mask nothing;
- `top:K`: the K best heads by retrieval score (ties broken by layer, then head, as `HeadScores.ranked`);
- `random:K`: K heads drawn uniformly, with a seed, from the model's heads that are NOT retrieval heads
  (score above `threshold`), i.e. the control of the causal test;
- `random-layer:K`: the layer-matched control: for each of the top-K heads, one head drawn (seeded) from the
  non-retrieval heads of the same layer that are not among the top-K, so the K masked heads sit in the
  same layers as the top-K. When a layer has too few such heads, the rest are drawn from the nearest layer
  that has some (lower layer first on a tie); `layer_matched_draw` reports how many moved;
- `heads:16-19,11-15`: an explicit list of layer-head pairs.

`top`, `random` and `random-layer` need a score file (this tool's scores.json or the paper's published files); its
layers x heads must equal the model's. Every head is checked against the model's dims.

`kv_mask` maps an [L, H] query-head set onto its [L, KV] KV groups (a KV head is set when any query head of its
group is), for the KV-cache policies and the sparsity analysis.

Left out on purpose: running anything (`attention.AttentionController` applies the mask), masking KV heads
(a mask names query heads), and weighting or partial masks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ..errors import RHeadsError
from .scores import HeadScores, parse_heads

KINDS = ("none", "top", "random", "random-layer", "heads")
SCORED = ("top", "random", "random-layer")  # kinds drawn from a score file
_EXAMPLE = "none, top:20, random:20, random-layer:20 or heads:16-19,11-15"


@dataclass(frozen=True)
class MaskSpec:
    kind: str  # one of KINDS
    k: int = 0  # for top / random / random-layer
    heads: tuple[tuple[int, int], ...] = ()  # for heads

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        if self.kind == "heads":
            return "heads:" + ",".join(f"{l}-{h}" for l, h in self.heads)
        return f"{self.kind}:{self.k}"


def parse_mask(spec: str | None) -> MaskSpec:
    """Parse a mask spec string (see the module docstring); errors say what a valid spec looks like."""
    text = (spec or "none").strip()
    if text in ("", "none"):
        return MaskSpec("none")
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS or kind == "none" or not arg.strip():
        raise RHeadsError(f"bad mask {spec!r}: use {_EXAMPLE}")
    if kind == "heads":
        return MaskSpec("heads", heads=tuple(parse_heads(arg)))
    try:
        k = int(arg)
    except ValueError:
        raise RHeadsError(f"bad mask {spec!r}: K must be a whole number, e.g. {kind}:20") from None
    if k < 0:
        raise RHeadsError(f"bad mask {spec!r}: K must be >= 0")
    return MaskSpec(kind, k=k)


def check_dims(scores: HeadScores, num_layers: int, num_heads: int, source: str = "the score file") -> None:
    """One-line error when a score file was made for a model of another shape."""
    if (scores.num_layers, scores.num_heads) != (num_layers, num_heads):
        raise RHeadsError(
            f"{source} has {scores.num_layers} layers x {scores.num_heads} heads but the model has "
            f"{num_layers} x {num_heads}: use scores detected on this model"
        )


def select_heads(spec: str | MaskSpec, num_layers: int, num_heads: int, *, scores: HeadScores | None = None,
                 threshold: float = 0.1, seed: int = 0) -> list[tuple[int, int]]:
    """The (layer, head) pairs a spec masks on a model with `num_layers` x `num_heads` query heads."""
    m = parse_mask(spec) if isinstance(spec, str) else spec
    total = num_layers * num_heads
    if m.kind == "none" or (m.kind in SCORED and m.k == 0):
        return []
    if m.kind == "heads":
        bad = [f"{l}-{h}" for l, h in m.heads if not (0 <= l < num_layers and 0 <= h < num_heads)]
        if bad:
            raise RHeadsError(
                f"head(s) {', '.join(bad)} do not exist: the model has {num_layers} layers x {num_heads} heads "
                f"(layers 0-{num_layers - 1}, heads 0-{num_heads - 1})"
            )
        return sorted(set(m.heads))
    if scores is None:
        raise RHeadsError(f"mask '{m}' needs head scores: pass --scores with a scores.json (rheads detect or the paper's)")
    check_dims(scores, num_layers, num_heads)
    if m.kind == "top":
        if m.k > total:
            raise RHeadsError(f"mask '{m}' asks for {m.k} heads but the model has {num_layers} x {num_heads} = {total}")
        return sorted(scores.top(m.k))
    retrieval = set(scores.above(threshold))
    if m.kind == "random-layer":
        if m.k > total:
            raise RHeadsError(f"mask '{m}' asks for {m.k} heads but the model has {num_layers} x {num_heads} = {total}")
        return layer_matched_draw(scores.top(m.k), retrieval, num_layers, num_heads, seed)[0]
    pool = [(l, h) for l in range(num_layers) for h in range(num_heads) if (l, h) not in retrieval]
    if m.k > len(pool):
        raise RHeadsError(
            f"mask '{m}' asks for {m.k} random non-retrieval heads but only {len(pool)} of the model's {total} heads "
            f"score <= {threshold}: use a smaller K or a higher --threshold"
        )
    return sorted(random.Random(seed).sample(pool, m.k))


def layer_matched_draw(top: list[tuple[int, int]], retrieval: set[tuple[int, int]], num_layers: int,
                       num_heads: int, seed: int) -> tuple[list[tuple[int, int]], int]:
    """One non-retrieval head, not in `top`, from the layer of each `top` head (the nearest layer with one left
    when that layer has run out). Returns (sorted heads, how many came from another layer)."""
    rng = random.Random(seed)
    taken = set(top)
    free = {l: [(l, h) for h in range(num_heads) if (l, h) not in retrieval and (l, h) not in taken]
            for l in range(num_layers)}
    drawn, moved = [], 0
    for l, _ in sorted(top):
        src = min((abs(m - l), m) for m in range(num_layers) if free[m])[1] if any(free.values()) else None
        if src is None:
            raise RHeadsError(f"no non-retrieval head is left for a layer-matched control of {len(top)} heads: "
                              "use a smaller K")
        moved += src != l
        drawn.append(free[src].pop(rng.randrange(len(free[src]))))
    return sorted(drawn), moved


def to_ablate(heads: list[tuple[int, int]]) -> dict[int, list[int]]:
    """[(layer, head)] -> {layer: [heads]} for `AttentionController(ablate=...)`."""
    out: dict[int, list[int]] = {}
    for l, h in sorted(set(heads)):
        out.setdefault(int(l), []).append(int(h))
    return out


def format_heads(heads: list[tuple[int, int]]) -> str:
    """[(16, 19), (11, 15)] -> '16-19,11-15' (the `heads:` spec syntax)."""
    return ",".join(f"{l}-{h}" for l, h in heads)


def resolve_mask(mask: str, scores_path: str | None, num_layers: int, num_heads: int, *, threshold: float = 0.1,
                 seed: int = 0) -> list[tuple[int, int]]:
    """The (layer, head) pairs a mask spec masks on a model of this shape, loading scores when it needs them."""
    spec = parse_mask(mask)
    scores = None
    if spec.kind in SCORED and spec.k > 0:
        if not scores_path:
            raise RHeadsError(f"mask '{spec}' needs head scores: pass --scores with a scores.json (rheads detect or the paper's)")
        scores = HeadScores.load(scores_path)
    return select_heads(spec, num_layers, num_heads, scores=scores, threshold=threshold, seed=seed)


def load_sweep_scores(path: str, ks: list[int], num_layers: int, num_heads: int, *, threshold: float = 0.1,
                      kinds: tuple[str, ...] = SCORED) -> HeadScores:
    """Load the scores of a sweep over K, failing before any run when a mask of `kinds` cannot be drawn."""
    scores = HeadScores.load(path)
    check_dims(scores, num_layers, num_heads, source=path)
    for k in ks:
        for kind in kinds:
            select_heads(MaskSpec(kind, k=k), num_layers, num_heads, scores=scores, threshold=threshold)
    return scores


def kv_mask(mask: np.ndarray, num_kv_heads: int) -> np.ndarray:
    """[L, H] bool -> [L, KV] bool: a KV head is set when any query head of its group is."""
    L, H = mask.shape
    if num_kv_heads < 1 or H % num_kv_heads:
        raise RHeadsError(f"{H} query heads cannot be grouped into {num_kv_heads} KV heads")
    return mask.reshape(L, num_kv_heads, H // num_kv_heads).any(axis=2)
