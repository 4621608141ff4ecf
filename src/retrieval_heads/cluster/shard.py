"""Shards: a deterministic, cost-balanced part of a run's work units, and the manifest each sharded run dir keeps.

`--shard i/n` (i counts from 0, so Slurm's `$SLURM_ARRAY_TASK_ID` fits as it is) gives a run the i-th of n parts
of its units: the samples of a NIAH grid, the items of a suite, a bench or a task. `partition` balances the
parts by estimated cost (the prompt length in tokens): the longest-processing-time rule, units taken longest
first, each to the part with the least cost so far, ties to the lowest part; every part keeps its units in the
run's own order. It depends only on the costs and n, so every shard computes the same partition.

`select(units, shard, cost=..., key=..., out=..., jsonl=..., kind=...)` returns this shard's units and writes
`out/shard.json` (the shard, the ids of every unit in the unsharded order, the ids of this shard's units, the
JSONL file and record type holding them): what `merge` needs to rebuild the unsharded order and to check that
the shards cover the run exactly once.

Left out on purpose: work stealing or dynamic rebalancing (a shard is a fixed list, so a retried shard resumes
its own records), and costs beyond the length (decode steps are bounded by max_new_tokens for every unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from ..errors import ParamError
from ..io.jsonl import atomic_write_json
from ..version import FORMAT_VERSION

T = TypeVar("T")
MANIFEST = "shard.json"
DONE = "shard-done.json"


@dataclass(frozen=True)
class Shard:
    index: int  # 0 .. count-1
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(spec: str | None, param: str = "shard") -> Shard | None:
    """'1/3' -> Shard(1, 3); None stays None; a one-line ParamError otherwise."""
    if spec is None:
        return None
    try:
        i, n = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise ParamError(param, spec, "write i/n, the i-th of n shards counting from 0: 0/3, 1/3 and 2/3") from None
    if n < 1 or not 0 <= i < n:
        raise ParamError(param, spec, f"i counts from 0 and must be below n: the shards of {max(n, 1)} are "
                         f"0/{max(n, 1)} .. {max(n, 1) - 1}/{max(n, 1)}")
    return Shard(i, n)


def partition(costs: Sequence[float], n: int) -> list[list[int]]:
    """n lists of unit indices, balanced by cost (longest first, to the least-loaded part), each in index order."""
    parts: list[list[int]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        j = min(range(n), key=lambda j: (loads[j], len(parts[j]), j))
        parts[j].append(i)
        loads[j] += costs[i]
    return [sorted(p) for p in parts]


def select(units: Sequence[T], shard: str | Shard | None, *, cost: Callable[[T], float], key: Callable[[T], str],
           out: str | Path | None = None, jsonl: str = "samples.jsonl", kind: str = "sample",
           what: str = "samples") -> list[T]:
    """This shard's units (all of them when `shard` is None); with `out`, writes its manifest there."""
    s = shard if isinstance(shard, Shard) or shard is None else parse_shard(shard)
    if s is None:
        return list(units)
    if s.count > len(units):
        raise ParamError("shard", str(s), f"the run has {len(units)} {what}: use at most {len(units)} shards")
    mine = [units[i] for i in partition([float(cost(u)) for u in units], s.count)[s.index]]
    if out is not None:
        write_manifest(out, s, [key(u) for u in units], [key(u) for u in mine], jsonl, kind)
    return mine


def write_manifest(out: str | Path, shard: Shard, ids: list[str], mine: list[str], jsonl: str, kind: str) -> None:
    atomic_write_json(Path(out) / MANIFEST, {"version": FORMAT_VERSION, "shard": str(shard), "jsonl": jsonl,
                                             "kind": kind, "ids": ids, "mine": mine})
