"""The sample grid: lengths x depths x needles per cell, parsed from "a,b,c" or "start:stop:count" specs, checked
against the model's context, and the hash of the data it probes (`data_sha`). Bad values are `ParamError`s of
`probe.lengths` / `probe.depths` (the CLI words them with its flags).

Left out on purpose: building the prompts (`build.py`) and running them.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from typing import Literal

from ..config import ProbeConfig
from ..errors import ParamError, RHeadsError
from .needles import Needle


@dataclass(frozen=True)
class Sample:
    id: str
    length: int
    depth: float
    needle_index: int


def grid(probe: ProbeConfig, n_needles: int) -> list[Sample]:
    """lengths x depths x needles_per_cell in a fixed order; needles assigned from a seeded shuffle."""
    order = list(range(n_needles))
    random.Random(probe.seed).shuffle(order)
    samples, c = [], 0
    for length in probe.lengths:
        for depth in probe.depths:
            for k in range(probe.needles_per_cell):
                idx = order[(c * probe.needles_per_cell + k) % n_needles]
                samples.append(Sample(f"L{length}-D{depth:g}-N{idx}", int(length), float(depth), idx))
            c += 1
    return samples


def data_sha(haystack: str, needles: list[Needle]) -> str:
    """A short hash of the haystack text and the needles: a resumed run must probe the same data."""
    blob = json.dumps([haystack, [[n.needle, n.question, n.real_needle] for n in needles]], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_grid(probe: ProbeConfig, max_new_tokens: int, max_ctx: int, param: str = "probe.lengths") -> None:
    """One-line errors for an empty grid or lengths the model's context cannot hold (`param`: the lengths'
    parameter name in the caller's config)."""
    if not probe.lengths or not probe.depths or probe.needles_per_cell < 1:
        raise RHeadsError("the grid is empty: give at least one length, one depth and needles_per_cell >= 1")
    if max_ctx and max(probe.lengths) + max_new_tokens > max_ctx:
        raise ParamError(param, ",".join(map(str, probe.lengths)),
                         f"length {max(probe.lengths)} + {max_new_tokens} new tokens exceeds the model's context of "
                         f"{max_ctx} tokens: use lengths up to {max_ctx - max_new_tokens}")


_GRID_EXAMPLES = {"lengths": "1000,2000,4000 or 1000:4000:4", "depths": "0,50,100 or 0:100:5"}


def parse_grid(spec: str, kind: Literal["lengths", "depths"], param: str | None = None) -> list[int | float]:
    """Parse "a,b,c" or inclusive evenly spaced "start:stop:count". Lengths: positive ints; depths: 0-100.
    Errors are `ParamError`s of `param` (default `probe.lengths` / `probe.depths`)."""
    if kind not in _GRID_EXAMPLES:
        raise ValueError(f"kind must be 'lengths' or 'depths', not {kind!r}")
    param = param or f"probe.{kind}"
    example = f"e.g. {_GRID_EXAMPLES[kind]}"

    def bad(advice: str = "write a comma list or start:stop:count") -> ParamError:
        return ParamError(param, spec, f"{advice}, {example}")

    text = spec.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3 or "," in text:
                raise bad()
            start, stop, count_f = (float(p) for p in parts)
            if count_f != int(count_f) or count_f < 1 or (count_f == 1 and start != stop):
                raise bad("write start:stop:count with a whole count >= 2, or a comma list")
            count = int(count_f)
            raw = [start] if count == 1 else [start + (stop - start) * i / (count - 1) for i in range(count)]
            if kind == "lengths":
                raw = [float(round(v)) for v in raw]
        else:
            raw = [float(p) for p in text.split(",")]
    except (ValueError, OverflowError):
        raise bad() from None
    if not raw or not all(math.isfinite(v) for v in raw):
        raise bad()
    values: list[int | float] = []
    for v in raw:
        if kind == "lengths":
            if v != int(v) or v <= 0:
                raise bad("lengths are positive whole numbers of tokens")
            value: int | float = int(v)
        else:
            if not 0 <= v <= 100:
                raise bad("depths are percents from 0 to 100")
            v = round(v, 4)
            value = int(v) if v == int(v) else v
        if value not in values:
            values.append(value)
    return values
