"""The task registry: what a task is (`TaskSpec`: data, not code paths), and what is scored.

A task says where its items come from, which prompt modes it has (`cot`, `direct`, `closedbook`), how its
answers are scored (`number`: exact numeric match of the extracted number; `text`: alias containment in the
first line), and its inline few-shot exemplars. `register_task(spec)` adds one; the built-in tasks register
themselves from their family modules (`gsm8k.py`, `closedbook.py`, `generated.py`); `rheads tasks` lists
them.

Left out on purpose: loading items (`loading.py`), prompts (`prompts.py`) and running models (`evaluate.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from ...errors import RHeadsError
from .numbers import extract_number, numbers_equal
from .text import alias_match, first_line

MODES = ("cot", "direct", "closedbook")
INSTRUCTIONS = {
    "cot": 'Solve the problem step by step. End with "The answer is N." where N is the final number.',
    "direct": "Answer with the number only.",
    "closedbook": "Answer the question in a few words.",
}


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    answers: tuple[str, ...]  # numeric tasks: (canonical number,); text tasks: accepted aliases
    solution: str = ""  # worked steps ending "The answer is N." (used for cot exemplars)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    answer: str  # "number" (exact numeric match) or "text" (alias containment in the first line)
    modes: tuple[str, ...]  # prompt modes, the first is the default
    source: str  # "file" (JSONL or hub) or "generated"
    fmt: str = "qa"  # record format of files: "gsm8k" or "qa"
    builtin: str | None = None  # packaged data file under experiments/tasks/data/
    local: tuple[str, ...] = ()  # local files tried (relative to the cwd) when no data is given
    hub: tuple[str, str | None, str] | None = None  # (dataset id, config, split) tried last
    generator: Callable[[random.Random, int], Item] | None = None  # (rng, steps) -> item, for "generated"
    exemplars: tuple[Item, ...] = ()  # inline few-shot exemplars
    shots: int = 4  # exemplars used by default
    max_new_tokens: dict[str, int] = field(default_factory=lambda: {"cot": 256, "direct": 16, "closedbook": 16})
    default_limit: int = 100  # items generated when no limit is given


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Add a task to the registry (`replace=True` to redefine a name)."""
    if spec.name in _TASKS and not replace:
        raise ValueError(f"a task named {spec.name!r} is already registered (pass replace=True)")
    bad = [m for m in spec.modes if m not in MODES]
    if bad or not spec.modes or spec.answer not in ("number", "text"):
        raise ValueError(f"task {spec.name!r}: modes must be among {MODES} and answer 'number' or 'text'")
    _TASKS[spec.name] = spec
    return spec


def task_names() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> TaskSpec:
    if name not in _TASKS:
        raise RHeadsError(f"unknown task {name!r}: use one of {', '.join(task_names())} (see `rheads tasks`)")
    return _TASKS[name]


def resolve_mode(spec: TaskSpec, mode: str | None) -> str:
    """The task's default mode for None; a one-line error for a mode the task does not have."""
    if mode is None:
        return spec.modes[0]
    if mode not in spec.modes:
        raise RHeadsError(f"task {spec.name!r} has no mode {mode!r}: use one of {', '.join(spec.modes)}")
    return mode


def format_tasks_table() -> str:
    rows = [("task", "answer", "modes", "data", "description")]
    for name in task_names():
        s = _TASKS[name]
        data = "generated (--steps, --item-seed)" if s.source == "generated" else \
            (f"built in ({s.builtin})" if s.builtin else ("--data JSONL" + (f" or hub {s.hub[0]}" if s.hub else "")))
        rows.append((name, s.answer, ",".join(s.modes), data, s.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows)


def extract(spec: TaskSpec, generation: str, mode: str) -> str | None:
    """What is scored: the canonical number (number tasks) or the first line (text tasks)."""
    if spec.answer == "number":
        return extract_number(generation, first_line=(mode == "direct"))
    line = first_line(generation)
    return line or None


def is_correct(spec: TaskSpec, extracted: str | None, item: Item) -> bool:
    if extracted is None:
        return False
    if spec.answer == "number":
        return numbers_equal(extracted, item.answers[0])
    return alias_match(extracted, item.answers)
