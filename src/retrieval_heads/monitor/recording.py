"""Per-token signals of head sets, read from the runtime's recorders at each decoding step.

A `HeadSet` is a named list of (layer, query head) with fixed weights (the retrieval set: each head's retrieval
score from scores.json; comparison sets: uniform). `Recording` owns the recorders one generation needs (over the
union of all head sets, or over every head when the baselines that need all heads are on) and turns recorded row
t into a `StepSignals` per head set:
- `copy`: the weighted share of the set's heads that copy from the context at step t: their top-1 key is a
  context slot holding the very token being emitted (the paper's copy test), or, given the emitted token's
  text (`step(..., piece=, word=)`), a slot whose text matches it (`textmatch.py`: ` Athens` in the context
  against an emitted `Ath` + `ens`);
- `copy_q`: the same for the question (an answer that repeats the question copies from it);
- `n_copy`: how many heads of the set copy from either;
- `mass`: the weighted mean attention mass of the set's heads on the context slots;
- `slot`: the context or question slot most copying weight points at (None when no head copies).
With `all_heads=True` it also keeps, per head, what the baselines need: the copy flags, the source mass, the
lookback ratio (mean attention on the prompt over mean attention on the generated tokens, Lookback Lens) and the
attention on the previous position (RAUQ).

Left out on purpose: turning signals into scores and verdicts (`signals/`, `rules.py`), batches (one prompt at a
time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..capture.recorders import PrevToken, SpanMass, Top1
from .prompt import MonitorPrompt
from .textmatch import SlotTexts

GENERATED_END = 10**9  # an end slot past any sequence: "everything generated"


@dataclass(frozen=True)
class HeadSet:
    name: str
    heads: tuple[tuple[int, int], ...]
    weights: tuple[float, ...]  # one per head, > 0

    @classmethod
    def uniform(cls, name: str, heads) -> "HeadSet":
        hs = tuple(sorted((int(l), int(h)) for l, h in heads))
        return cls(name, hs, tuple(1.0 for _ in hs))

    @classmethod
    def scored(cls, name: str, heads, score_matrix: np.ndarray) -> "HeadSet":
        hs = tuple(sorted((int(l), int(h)) for l, h in heads))
        return cls(name, hs, tuple(max(float(score_matrix[l, h]), 1e-6) for l, h in hs))


@dataclass
class StepSignals:
    copy: float
    copy_q: float
    n_copy: int
    mass: float
    slot: int | None


def _union(sets: list[HeadSet]) -> dict[int, list[int]]:
    out: dict[int, set[int]] = {}
    for s in sets:
        for l, h in s.heads:
            out.setdefault(l, set()).add(h)
    return {l: sorted(hs) for l, hs in sorted(out.items())}


class Recording:
    """Recorders over the head sets of one prompt, and their per-step reduction (see the module docstring)."""

    def __init__(self, prompt: MonitorPrompt, sets: list[HeadSet], num_layers: int, num_heads: int, all_heads: bool = False):
        self.prompt, self.sets, self.all_heads = prompt, sets, all_heads
        union = {l: list(range(num_heads)) for l in range(num_layers)} if all_heads else _union(sets)
        self.order = [(l, h) for l, hs in union.items() for h in hs]  # flat head order of a step's arrays
        pos = {lh: i for i, lh in enumerate(self.order)}
        self.index = [np.array([pos[lh] for lh in s.heads], dtype=np.int64) for s in sets]
        self.w = [np.asarray(s.weights, dtype=np.float64) for s in sets]
        heads = None if all_heads else union
        n = prompt.n
        c0, c1 = prompt.context_slots
        q0, q1 = prompt.question_slots
        spans = torch.tensor([[[c0, c1], [q0, q1], [0, n], [n, GENERATED_END]]])  # [B=1, S=4, 2]
        self.top1 = Top1(heads)
        self.mass = SpanMass(spans, heads)
        self.prev = PrevToken(heads) if all_heads else None
        self.ids = np.asarray(prompt.input_ids, dtype=np.int64)  # [N]
        self.kind = np.zeros(n, dtype=np.int8)  # [N] 1 = context, 2 = question, 0 = elsewhere
        self.kind[c0:c1] = 1
        self.kind[q0:q1] = 2
        self.texts = SlotTexts(prompt)
        self.raw: list[dict[str, np.ndarray]] = []  # per step, per head (all_heads only)

    @property
    def recorders(self) -> list:
        return [r for r in (self.top1, self.mass, self.prev) if r is not None]

    def _flat(self, per_layer: dict[int, torch.Tensor]) -> np.ndarray:
        """{layer: [1, h, ...]} -> [n_heads_recorded, ...] in `self.order`."""
        return np.concatenate([per_layer[l][0].numpy() for l in sorted(per_layer)], axis=0)

    def step(self, t: int, token: int, piece: str = "", word: str = "") -> list[StepSignals]:
        """The signals of every head set at recorded row t, whose emitted token is `token`, with normalised text
        `piece` and word so far `word` (`textmatch.py`; empty: match by token id alone)."""
        top = self._flat(self.top1.step(t)).astype(np.int64)  # [n]
        mass = self._flat(self.mass.step(t))  # [n, 4]: context, question, prompt, generated
        n = self.prompt.n
        inside = (top >= 0) & (top < n)
        safe = np.where(inside, top, 0)
        kind = np.where(inside, self.kind[safe], 0)  # [n]
        same = inside & (self.ids[safe] == token)  # [n] top-1 on a prompt token equal to the emitted one ...
        if piece:  # ... or on a context or question token whose text matches it
            for s in np.unique(safe[(kind > 0) & ~same]):
                if self.texts.matches(int(s), piece, word):
                    same |= (kind > 0) & (safe == s)
        copies = same & (kind > 0)  # [n] from the context or the question
        ctx_mass = mass[:, 0]  # [n]
        out = []
        for idx, w in zip(self.index, self.w):
            c, k = copies[idx], kind[idx]
            slot = None
            if c.any():
                votes: dict[int, float] = {}
                for s, wi in zip(top[idx][c], w[c]):
                    votes[int(s)] = votes.get(int(s), 0.0) + float(wi)
                slot = max(votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]
            total = w.sum()
            out.append(StepSignals(copy=float((w * (c & (k == 1))).sum() / total),
                                   copy_q=float((w * (c & (k == 2))).sum() / total), n_copy=int(c.sum()),
                                   mass=float((w * ctx_mass[idx]).sum() / total), slot=slot))
        if self.all_heads:
            ctx_mean = mass[:, 2] / n  # [n] mean attention per prompt token
            new_mean = mass[:, 3] / t if t > 0 else np.zeros_like(ctx_mean)  # t generated tokens are visible at row t
            lr = ctx_mean / np.maximum(ctx_mean + new_mean, 1e-12)
            self.raw.append({"copy": same & (kind == 1), "copy_q": same & (kind == 2),
                             "mass": ctx_mass.astype(np.float32), "lr": lr.astype(np.float32)})
        return out

    def prev_token(self) -> np.ndarray:
        """[rows, n_heads] attention of each head on the previous position, per recorded row (all_heads only)."""
        per_layer = self.prev.result()  # {layer: [1, T, h]}
        if not per_layer:  # nothing recorded: an empty answer (its first token was the end)
            return np.zeros((0, len(self.order)), dtype=np.float32)
        return np.concatenate([per_layer[l][0].numpy() for l in sorted(per_layer)], axis=1)  # [T, n]
