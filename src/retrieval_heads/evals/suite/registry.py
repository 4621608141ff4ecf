"""The long-context suite's task registry: names -> `SuiteTask` instances, read by the CLI (`rheads suite list`,
`--tasks`) and the run.

    from retrieval_heads.evals.suite.registry import SuiteTask, register_task

    @register_task("niah_single_1", haystack="noise", key="words", value="numbers")
    @register_task("niah_single_2", haystack="essay", key="words", value="numbers")
    class Niah(SuiteTask):
        family, metric, tokens_to_generate = "retrieval", "string_match_all", 128
        def build(self, ctx, seed, n, index): ...

Each decorator registers one instance of the class built with its keyword arguments, so one class serves a
family's variants. The built-in families are one module each in `suite/tasks/`, imported on the first look-up
(adding a family is one new file). Names are listed by family, then in RULER's order, then by registration.

A task's `build(ctx, seed, n, index)` returns the RULER text of a sample with `n` haystack units (words, noise
sentences, needle lines, list words, documents: the task says which); `fit.py` picks the largest `n` whose
prompt fits the target length. The same (seed, n) always gives the same text.

Importable without torch or transformers. Left out on purpose: entry points of other packages, and the
prompt's tokens (`prompt.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ParamError, RHeadsError
from ...registry import Registry

FAMILIES = ("retrieval", "multi-hop", "aggregation", "qa")  # RULER's four, in its order
METRICS = ("string_match_all", "string_match_part")
RULER_ORDER = ("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
               "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe", "qa_1", "qa_2")
_REGISTRY = Registry("suite task", f"{__package__}.tasks", "tasks", order=lambda name, task: (
    FAMILIES.index(task.family), RULER_ORDER.index(name) if name in RULER_ORDER else len(RULER_ORDER)))


@dataclass
class Built:
    """One sample's RULER text: `input` (the user turn), `answer_prefix` (starts the assistant turn), `outputs`
    (the gold strings)."""

    input: str
    answer_prefix: str
    outputs: list[str]


class SuiteTask:
    """A task of the suite. Subclasses set `family`, `metric`, `tokens_to_generate` (RULER's new-token budget),
    `description`, and implement `build`; `min_units` is the smallest `n` the task builds; `max_units(ctx)` the
    largest (None: no limit)."""

    name = ""
    family = "retrieval"
    metric = "string_match_all"
    tokens_to_generate = 32
    description = ""
    unit = "units"  # what n counts, for messages
    min_units = 1

    def __init__(self, **params: Any):
        self.params = params

    def build(self, ctx, seed: int, n: int, index: int = 0) -> Built:
        raise NotImplementedError

    def max_units(self, ctx) -> int | None:
        return None

    def check(self, ctx) -> None:
        """Fail before any work when this task's data is missing (e.g. qa's dataset)."""


def register_task(name: str, **params: Any):
    """Class decorator: register `cls(**params)` under `name` (its `name` set). A second class under a taken name
    is refused; the same class again (a module reloaded) replaces it."""
    _REGISTRY.check_name(name)

    def decorate(cls: type) -> type:
        if cls.family not in FAMILIES:
            raise RHeadsError(f"suite task {name}: family {cls.family!r} is not one of {', '.join(FAMILIES)}")
        if cls.metric not in METRICS:
            raise RHeadsError(f"suite task {name}: metric {cls.metric!r} is not one of {', '.join(METRICS)}")
        _REGISTRY.add(name, cls, cls(**params))
        return cls

    return decorate


def unregister_task(name: str) -> None:
    """Remove a registered task (tests, notebooks); a name not registered is ignored."""
    _REGISTRY.remove(name)


def task_names() -> list[str]:
    """Every registered task name, by family, then in RULER's order, then by registration."""
    return _REGISTRY.names()


def get_task(name: str, param: str = "tasks") -> SuiteTask:
    """The task registered under `name`; ParamError of `param` naming the registered ones otherwise."""
    return _REGISTRY.get(name, param)


def check_tasks(names: list[str], param: str = "tasks") -> list[str]:
    """`names` checked (each registered, none twice, at least one)."""
    if not names:
        raise ParamError(param, names, f"name at least one of {', '.join(task_names())}")
    for n in names:
        get_task(n, param)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ParamError(param, ",".join(names), f"{', '.join(dup)} named twice: name each task once")
    return names
