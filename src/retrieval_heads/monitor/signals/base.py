"""The signal registry: what a signal is (`Signal`), what it reads of an answer (`AnswerTrace`), and the lookups
the monitor and its benchmark use.

A signal is one small class in its own module of this package, registered by `@register_signal`; every module
here is imported on the first lookup, so adding a signal is adding one file. A signal declares:
- `name`, and `higher_is_hallucinated` (its direction: False for log-probabilities, where higher = more
  trustworthy); `answer_score` / `token_scores` orient it so that higher = more likely hallucinated;
- how it is computed: `value(trace, qualifier)` (answer level, in its own orientation, None when undefined) and
  `token_values(trace, qualifier)` (per answer token, None when the signal has no token level);
- its kind: `per_head_set` (computed for every head set: columns `<head set>:<name>`, e.g. `retrieval:combined`,
  the monitor's score), `stat` (the key of `AnswerReport.baselines` where a run stores its answer value, so that
  the benchmark reads the value computed at full precision), `needs_all_heads` (only when every head is
  recorded, `Monitor(baselines=True)`), `supervised` (fitted to labels over a whole benchmark run by
  `fit_predict`: columns `<name>[<setting>]`);
- `order`: where it is listed (reports, tables).

Left out on purpose: the metrics (`bench/metrics.py`), and choosing among signals (each is reported, none is
selected by its result).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

from ..rules import counted, is_echo

PRIMARY_SET = "retrieval"  # the monitor's head set: the retrieval heads, weighted by their retrieval score
MONITOR_SIGNAL = "combined"
MONITOR = f"{PRIMARY_SET}:{MONITOR_SIGNAL}"  # the monitor's answer score, fixed in advance


@dataclass
class HeadSetTrace:
    """One head set's per-token signals of an answer (`recording.StepSignals` over the answer's tokens)."""

    copy: Sequence[float]
    copy_q: Sequence[float]
    mass: Sequence[float]

    def echo(self) -> list[bool]:
        return [is_echo(c, q) for c, q in zip(self.copy, self.copy_q)]


@dataclass
class AnswerTrace:
    """What signals read of one answer: per token its content flag, each head set's signals, the log-probability
    and entropy, RAUQ's per-token values; per answer RAUQ, whether every head was recorded, and `stats`, the
    answer values a run stored (a benchmark record's `baselines`; None while the answer is being reported)."""

    content: Sequence[bool] = ()
    sets: dict[str, HeadSetTrace] = field(default_factory=dict)
    logprobs: Sequence[float] = ()
    entropies: Sequence[float] = ()
    rauq: float | None = None
    rauq_tokens: Sequence[float] = ()
    all_heads: bool = False
    stats: dict[str, Any] | None = None
    sources: Sequence[int | None] = ()  # per token: the context character its copy came from (None: no context copy)
    anchors: Sequence[int] = ()  # sorted context characters of the question's content words (`monitor/anchors.py`)
    context_chars: int = 0

    @classmethod
    def from_record(cls, rec: dict) -> "AnswerTrace":
        """The trace of one `rheads monitor bench` record (items.jsonl)."""
        sets = {k: HeadSetTrace(v["copy"], v["copy_q"], v["mass"]) for k, v in rec["signals"].items()}
        stats = rec.get("baselines") or {}
        return cls(rec["content"], sets, rec["logprobs"], rec["entropies"], stats.get("rauq"), rec["rauq_tokens"],
                   "rauq" in stats, stats)


def counted_mean(values: Sequence[float] | None, content: Sequence[bool], hs: HeadSetTrace) -> float | None:
    """The mean of per-token values over the counted tokens (`rules.counted`); None for an answer without tokens."""
    if not values:
        return None
    keep = counted(content, hs.echo())
    return sum(values[i] for i in keep) / len(keep)


class Signal:
    """One signal (module docstring). Subclasses set the class attributes and define `value` / `token_values`
    (or `fit_predict` when supervised)."""

    name: ClassVar[str]
    higher_is_hallucinated: ClassVar[bool] = True
    per_head_set: ClassVar[bool] = False
    stat: ClassVar[str | None] = None
    needs_all_heads: ClassVar[bool] = False
    supervised: ClassVar[bool] = False
    ours: ClassVar[bool] = False  # a head-based signal of this toolkit besides the monitor: not a baseline to beat
    order: ClassVar[int] = 100

    def value(self, a: AnswerTrace, qualifier: str | None = None) -> float | None:
        raise NotImplementedError

    def token_values(self, a: AnswerTrace, qualifier: str | None = None) -> list[float] | None:
        return None

    def fit_predict(self, items: list[dict], run: Path) -> dict[str, dict[str, dict]]:
        """Supervised signals: {setting: {"answer": {item id: score}, "tokens": {item id: [score per token]}}}."""
        raise NotImplementedError

    # ----------------------------------------------------------------- derived: naming and orientation
    def column(self, qualifier: str | None = None) -> str:
        """The name of this signal's column in the benchmark's tables."""
        if self.per_head_set:
            return f"{qualifier}:{self.name}"
        return f"{self.name}[{qualifier}]" if self.supervised else self.name

    def qualifiers(self, a: AnswerTrace) -> list[str | None]:
        """The head sets a per-head-set signal is computed for; [None] for the others."""
        return list(a.sets) if self.per_head_set else [None]

    def orient(self, x: float) -> float:
        return x if self.higher_is_hallucinated else -x

    def answer_score(self, a: AnswerTrace, qualifier: str | None = None) -> float:
        """The answer's hallucination score (higher = worse), NaN when undefined; a stored record's value when
        the run stored one (`stat`)."""
        if self.stat is not None and a.stats is not None:
            v = a.stats.get(self.stat)
        else:
            v = self.value(a, qualifier)
        return float("nan") if v is None else self.orient(float(v))

    def token_scores(self, a: AnswerTrace, qualifier: str | None = None) -> list[float] | None:
        vals = self.token_values(a, qualifier)
        return None if vals is None else [self.orient(x) for x in vals]


_SIGNALS: dict[str, Signal] = {}
_LOADED = False


def register_signal(cls: type[Signal]) -> type[Signal]:
    """Class decorator: add a signal to the registry (its name must be new)."""
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise ValueError(f"signal class {cls.__name__} needs a `name`")
    old = _SIGNALS.get(cls.name)
    if old is not None and (type(old).__module__, type(old).__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"a signal named {cls.name!r} is already registered ({type(old).__qualname__})")
    _SIGNALS[cls.name] = cls()
    return cls


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    pkg = __name__.rsplit(".", 1)[0]
    for m in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if m.name != "base":
            importlib.import_module(f"{pkg}.{m.name}")


def all_signals() -> list[Signal]:
    """Every registered signal, in listing order."""
    _load()
    return sorted(_SIGNALS.values(), key=lambda s: (s.order, s.name))


def get_signal(name: str) -> Signal:
    _load()
    if name not in _SIGNALS:
        raise KeyError(f"no signal named {name!r}: one of {', '.join(s.name for s in all_signals())}")
    return _SIGNALS[name]


def signal_of(column: str) -> tuple[Signal, str | None] | None:
    """(signal, head set or setting) of a column name (`Signal.column`); None for a name no signal makes."""
    _load()
    if column.endswith("]") and "[" in column:
        name, qual = column[:-1].split("[", 1)
        s = _SIGNALS.get(name)
        return (s, qual) if s is not None and s.supervised else None
    if ":" in column:
        qual, name = column.rsplit(":", 1)
        s = _SIGNALS.get(name)
        return (s, qual) if s is not None and s.per_head_set else None
    s = _SIGNALS.get(column)
    return (s, None) if s is not None and not s.per_head_set and not s.supervised else None


def is_supervised(column: str) -> bool:
    hit = signal_of(column)
    return hit is not None and hit[0].supervised


def head_set_scores(a: AnswerTrace, head_set: str = PRIMARY_SET) -> dict[str, float | None]:
    """{signal name: answer value} of every per-head-set signal for one head set (`AnswerReport.scores`)."""
    return {s.name: s.value(a, head_set) for s in all_signals() if s.per_head_set}


def stats(a: AnswerTrace) -> dict[str, Any]:
    """{stat key: answer value} of every stored signal the trace allows (`AnswerReport.baselines`)."""
    return {s.stat: s.value(a) for s in all_signals()
            if s.stat is not None and not s.supervised and (a.all_heads or not s.needs_all_heads)}
