"""Bootstrap 95% intervals for means: of one run's samples, and of a control pooled over random seeds.

- `bootstrap_ci(values)`: percentile interval of the mean, resampling the values with replacement;
- `bootstrap_ci_seeds(groups)`: two-level: resample the seeds (groups), then the samples within each drawn
  group, so the interval covers both which heads were drawn and which samples were probed;
- `paired_diff_ci(a, b)`: interval of mean(a - b) over paired samples (the same cells or items); with `groups`,
  a cluster bootstrap that resamples whole groups of samples that are not independent (`group_weights`);
  `format_diff` writes such a difference as '+x [lo, hi]'.
Each uses `n_boot` resamples from a fixed seed, so the same numbers give the same interval.

Left out on purpose: significance tests and multiple-comparison corrections; an interval is reported, the
reader judges.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

N_BOOT = 2000


def _round(x: float) -> float:
    return round(float(x), 4)


def bootstrap_ci(values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0) -> list[float] | None:
    """[low, high] of the mean; None for no values."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)  # [n_boot]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [_round(lo), _round(hi)]


def bootstrap_ci_seeds(groups: Sequence[Sequence[float]], n_boot: int = N_BOOT, seed: int = 0) -> list[float] | None:
    """[low, high] of the pooled mean over groups (one per random seed), resampling groups then samples."""
    gs = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not gs:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for b in range(n_boot):
        picked = [gs[i] for i in rng.integers(0, len(gs), size=len(gs))]
        means[b] = np.mean([g[rng.integers(0, g.size, size=g.size)].mean() for g in picked])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [_round(lo), _round(hi)]


def paired_diff_ci(a: Sequence[float], b: Sequence[float], n_boot: int = N_BOOT, seed: int = 0,
                   groups: Sequence | None = None) -> list[float] | None:
    """[low, high] of mean(a - b) over paired samples; with `groups` (one label per sample: samples that share a
    question, a needle at several lengths), whole groups are resampled (`group_weights`)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    d = np.asarray(a, float) - np.asarray(b, float)
    if groups is None:
        return bootstrap_ci(d, n_boot, seed)
    if d.size == 0:
        return None
    w = group_weights(groups, n_boot, seed)  # [n_boot, n]
    means = (w * d).sum(axis=1) / w.sum(axis=1)  # [n_boot]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [_round(lo), _round(hi)]


def group_weights(groups: Sequence, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """[n_boot, n] the cluster bootstrap's weights: each resample draws as many groups as there are, with
    replacement, and each sample weighs as often as its group was drawn."""
    labels, inv = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)  # inv [n]
    return draw_counts(len(labels), n_boot, seed)[:, inv]  # [n_boot, G] -> [n_boot, n]


def draw_counts(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """[n_boot, n] how often each of n units is drawn in each resample of n draws with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # [n_boot, n]
    out = np.zeros((n_boot, n), dtype=np.float64)
    np.add.at(out, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    return out


def format_diff(d: dict | None, fmt: str = "{:+.1f}") -> str:
    """A paired difference {diff, ci95} as '+x [lo, hi]', or '-'."""
    if not d:
        return "-"
    ci = d.get("ci95")
    return fmt.format(d["diff"]) + (f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]" if ci else "")
