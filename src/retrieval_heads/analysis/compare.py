"""Head-by-head comparison of two score sets of one architecture (the paper's "intrinsic" property).

`compare(a, b)` returns, over the mean scores of all heads:
- `pearson`, `spearman`: correlations (Spearman = Pearson of ranks, ties given their average rank, computed
  with numpy; no scipy); None when either side is constant (the correlation is undefined);
- `jaccard`: |A & B| / |A | B| of the heads above the threshold; 1.0 when both sets are empty (the two score
  sets agree that no head retrieves);
- `topk_overlap`: {k: |topA(k) & topB(k)| / k}, top-k by score with ties broken by (layer, head) as in
  `HeadScores.ranked`; k above the number of heads is clipped to it. In compare.json the keys are strings.

Two score sets of different shapes stop with one line: heads of different architectures have no
one-to-one correspondence. `write_compare` writes compare.json (versioned, both sources, the config); the scatter
plot is `viz.compare.scatter_plot`.

Left out on purpose: significance tests and confidence intervals (one pair of runs is one measurement),
and matching heads across architectures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import RHeadsError
from ..heads.scores import HeadScores
from ..io.jsonl import atomic_write_json
from ..version import FORMAT_VERSION, __version__

DEFAULT_KS = (5, 10, 20, 50)


@dataclass
class CompareConfig:
    """How `rheads compare` compares; written into compare.json."""

    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    threshold: float = 0.1
    split_length: float | str | None = None  # one run: "median" or a length; None: two score sets

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(x: HeadScores | np.ndarray) -> np.ndarray:
    return x.mean() if isinstance(x, HeadScores) else np.asarray(x, dtype=float)


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    dx, dy = x - x.mean(), y - y.mean()
    den = float(np.sqrt((dx * dx).sum() * (dy * dy).sum()))
    if den == 0.0:
        return None
    return float(np.clip((dx * dy).sum() / den, -1.0, 1.0))


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the average of the ranks they span (scipy's 'average')."""
    x = np.asarray(x, float).ravel()
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    return pearson(rankdata(x), rankdata(y))


def top_heads(m: np.ndarray, k: int) -> set[tuple[int, int]]:
    """The k best heads of an [L, H] score matrix, ties by (layer, head)."""
    L, H = m.shape
    heads = sorted(((l, h) for l in range(L) for h in range(H)), key=lambda lh: (-m[lh], lh))
    return set(heads[:k])


def compare(a: HeadScores | np.ndarray, b: HeadScores | np.ndarray, ks: Sequence[int] = DEFAULT_KS,
            threshold: float = 0.1) -> dict[str, Any]:
    ma, mb = _mean(a), _mean(b)
    if ma.shape != mb.shape:
        raise RHeadsError(f"cannot compare head by head: {ma.shape[0]}x{ma.shape[1]} vs {mb.shape[0]}x{mb.shape[1]} "
                          "(layers x heads); compare two runs of the same architecture")
    n = ma.size
    sa, sb = ma > threshold, mb > threshold
    union = int((sa | sb).sum())
    both = int((sa & sb).sum())
    overlap = {}
    for k in ks:
        if k < 1:
            raise RHeadsError(f"top-k needs k >= 1, got {k}")
        kk = min(int(k), n)
        overlap[int(k)] = len(top_heads(ma, kk) & top_heads(mb, kk)) / kk
    return {
        "shape": list(ma.shape),
        "n_heads": n,
        "threshold": threshold,
        "pearson": pearson(ma, mb),
        "spearman": spearman(ma, mb),
        "jaccard": both / union if union else 1.0,
        "n_above_a": int(sa.sum()),
        "n_above_b": int(sb.sum()),
        "n_above_both": both,
        "topk_overlap": overlap,
    }


def run_source(run: Any, n_counted: int | None = None) -> dict[str, Any]:
    """How compare.json names one side: a `properties.Run`'s name, source, model, family, shape, counted samples."""
    return {"name": run.name, "source": run.source, "model": run.model_name, "family": run.family,
            "shape": [run.scores.num_layers, run.scores.num_heads],
            "n_counted": run.scores.n_samples if n_counted is None else n_counted}


def write_compare(out: str | Path, result: dict[str, Any], a: dict[str, Any], b: dict[str, Any],
                  config: CompareConfig, extra: dict[str, Any] | None = None) -> Path:
    """compare.json in `out`: version, toolkit, config, the two sources (`a`, `b`: name, source, ...), metrics."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(), "a": a, "b": b,
           **(extra or {}), **result}
    atomic_write_json(out / "compare.json", doc)
    return out / "compare.json"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def format_table(result: dict[str, Any], label_a: str = "a", label_b: str = "b") -> str:
    lines = [
        f"{label_a} vs {label_b}: {result['n_heads']} heads ({result['shape'][0]} layers x {result['shape'][1]})",
        f"{'pearson':>12}  {_fmt(result['pearson'])}",
        f"{'spearman':>12}  {_fmt(result['spearman'])}",
        f"{'jaccard':>12}  {_fmt(result['jaccard'])}  (score > {result['threshold']:g}: {result['n_above_a']} vs "
        f"{result['n_above_b']}, {result['n_above_both']} in both)",
    ]
    for k, v in result["topk_overlap"].items():
        lines.append(f"{'top-' + str(k):>12}  {_fmt(v)}")
    return "\n".join(lines)
