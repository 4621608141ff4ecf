"""Loading a task's items and few-shot exemplars: local JSONL, packaged data, hub datasets, or generated.

Left out on purpose: downloading without the `datasets` package, and formats other than JSONL records.
"""

from __future__ import annotations

import json
import random
import re
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ...errors import ParamError, RHeadsError
from .numbers import normalize_number
from .registry import Item, TaskSpec

def _gsm8k_item(rec: dict[str, Any], i: int, source: str) -> Item:
    q, a = rec.get("question"), rec.get("answer")
    if not isinstance(q, str) or not isinstance(a, str) or "####" not in a:
        raise RHeadsError(f"{source}, record {i + 1}: expected {{\"question\", \"answer\"}} with the answer ending in '#### N'")
    gold = normalize_number(a.rsplit("####", 1)[1])
    if gold is None:
        raise RHeadsError(f"{source}, record {i + 1}: no number after '####' in the answer")
    steps = re.sub(r"<<[^>]*>>", "", a.rsplit("####", 1)[0]).strip()  # drop calculator annotations
    solution = (steps + "\n" if steps else "") + f"The answer is {gold}."
    return Item(str(rec.get("id", i)), q.strip(), (gold,), solution)


def _qa_item(rec: dict[str, Any], i: int, source: str) -> Item:
    q = rec.get("question")
    ans = rec.get("answers", rec.get("answer"))
    if isinstance(ans, str):
        ans = [ans]
    if not isinstance(q, str) or not isinstance(ans, list) or not ans or not all(isinstance(x, str) for x in ans):
        raise RHeadsError(f"{source}, record {i + 1}: expected {{\"question\", \"answers\": [\"alias\", ...]}}")
    return Item(str(rec.get("id", i)), q.strip(), tuple(ans), "")


_FORMATS: dict[str, Callable[[dict[str, Any], int, str], Item]] = {"gsm8k": _gsm8k_item, "qa": _qa_item}


def parse_records(records: list[dict[str, Any]], fmt: str, source: str) -> list[Item]:
    items = [_FORMATS[fmt](r, i, source) for i, r in enumerate(records)]
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):  # ids key the resumable records: make them unique by position
        items = [Item(f"{i}", it.question, it.answers, it.solution) for i, it in enumerate(items)]
    return items


def read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise RHeadsError(f"{path}, line {n}: not valid JSON ({e.msg}): give one JSON object per line") from None
    return out


def _hub_records(dataset: str, config: str | None, split: str) -> list[dict[str, Any]]:
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise ParamError("data", dataset, "loading a hub dataset needs the `datasets` package, which is not "
                         "installed: pass a local JSONL file as {data}") from None
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset, config, split=split)
    except Exception as e:  # network, unknown id, unknown split: all end the same way for the user
        raise ParamError("data", dataset, f"could not load the hub dataset ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}): pass a local JSONL file as {{data}}") from None
    return [dict(r) for r in ds]


def resolve_data(spec: TaskSpec, data: str | None) -> str:
    """Where a file task's items come from: a path, `builtin:<file>`, or `hub:<id>`."""
    if data:
        path = Path(data).expanduser()
        if path.is_file():
            return str(path)
        if path.suffix.lower() in (".jsonl", ".json") or data.startswith((".", "/", "~")):
            raise RHeadsError(f"data file {data!r} does not exist: check the path")
        return f"hub:{data}"
    if spec.builtin:
        return f"builtin:{spec.builtin}"
    for cand in spec.local:
        if Path(cand).is_file():
            return str(Path(cand))
    if spec.hub:
        return f"hub:{spec.hub[0]}"
    raise ParamError("data", data, f"task {spec.name!r} needs data: a local JSONL file as {{data}}")


def load_items(spec: TaskSpec, data: str | None = None, *, limit: int | None = None, steps: int = 3,
               seed: int = 0, split: str | None = None) -> list[Item]:
    """The task's items, the first `limit` of them. Generated tasks use (seed, steps); file tasks `data`."""
    if limit is not None and limit < 1:
        raise ParamError("limit", limit, "must be at least 1")
    if spec.source == "generated":
        if steps < 1:
            raise ParamError("steps", steps, "must be at least 1")
        n = limit or spec.default_limit
        return [_generated(spec, seed, steps, i, "test") for i in range(n)]
    where = resolve_data(spec, data)
    if where.startswith("builtin:"):
        text = resources.files("retrieval_heads.evals.tasks").joinpath("data", where[8:]).read_text(encoding="utf-8")
        records = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    elif where.startswith("hub:"):
        dataset = where[4:]
        cfg = spec.hub[1] if spec.hub and spec.hub[0] == dataset else None
        records = _hub_records(dataset, cfg, split or (spec.hub[2] if spec.hub else "test"))
    else:
        records = read_jsonl_records(Path(where))
    items = parse_records(records, spec.fmt, where)
    if not items:
        raise RHeadsError(f"{where} holds no items")
    return items[:limit] if limit else items


def load_exemplars(spec: TaskSpec, n: int, fewshot_file: str | None = None, *, steps: int = 3,
                   seed: int = 0) -> list[Item]:
    """n few-shot exemplars: the first n of `fewshot_file` (the task's format), generated ones (from a seed
    stream disjoint from the test items), or the task's inline ones."""
    if n <= 0:
        return []
    if fewshot_file:
        path = Path(fewshot_file).expanduser()
        if not path.is_file():
            raise RHeadsError(f"few-shot file {fewshot_file!r} does not exist: check the path")
        pool = parse_records(read_jsonl_records(path), spec.fmt, str(path))
    elif spec.source == "generated":
        pool = [_generated(spec, seed, steps, i, "fewshot") for i in range(n)]
    else:
        pool = list(spec.exemplars)
    if len(pool) < n:
        raise ParamError("shots", n, f"only {len(pool)} few-shot exemplars are available for task {spec.name!r}: "
                         f"use {{shots}} {len(pool)} or give {{fewshot_file}}")
    return pool[:n]


def _generated(spec: TaskSpec, seed: int, steps: int, i: int, stream: str) -> Item:
    assert spec.generator is not None
    rng = random.Random(f"{spec.name}:{stream}:{seed}:{steps}:{i}")  # str seeds hash deterministically
    item = spec.generator(rng, steps)
    return Item(f"{spec.name}-s{seed}-st{steps}-{stream[0]}{i}", item.question, item.answers, item.solution)
