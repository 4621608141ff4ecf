"""The interface of an answering method: a small class that picks each next token of an answer from the forward
passes it asks for, and may replace the finished answer (a refusal).

    class AnswerMethod:
        name, help        # registry name (set by `register_method`) and one line for `rheads answer list`
        baseline: bool    # a method from the literature (greedy, CAD, DeCoRe) rather than ours
        params: dict      # parameter -> default; every default is documented in the class docstring
        start(run)        # open the passes it needs: run.open_pass(name, input_ids, ablate=..., recorders=...)
        step(run) -> Choice   # the next token, read from run.passes[name].logits() and their recorders
        finish(run, answer) -> (answer, abstained)   # default: the answer as generated, not abstained
        tune_objective(figures) -> float | None      # what `rheads answer tune` maximizes (default: accuracy)

The shared loop (`loop.decode`) calls `start` once, then `step` until an end token, the text stop or the token
budget, feeding each chosen token to every open pass (a pass computes lazily: one it does not read at a step
catches up on the skipped tokens in one forward call when next read), then `finish`. `Choice.logprob` is the
chosen token's log-probability under the method's own next-token distribution (what `mean_logprob` averages).

Defaults are the papers' (or, for ours, picked before any data was run) and are untuned; `params` given to the
constructor override them (`ParamError` `params` for a name the method lacks or a value of the wrong type).
Left out on purpose: batches (one prompt at a time), sampling, and beam search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ParamError


@dataclass
class Choice:
    token: int
    logprob: float  # of `token` under the method's distribution at this step
    scores: Any = None  # the step's [V] scores the token was picked from (tests, inspection); None when not kept


class AnswerMethod:
    """Base class; see the module docstring. Subclasses set `help`, `params` and implement `step`."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    baseline: ClassVar[bool] = False
    order: ClassVar[int] = 100
    params: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any):
        values = dict(self.params)
        for key, value in params.items():
            if key not in self.params:
                known = ", ".join(self.params) or "none"
                raise ParamError("params", f"{self.name}.{key}", f"{self.name} has no parameter {key!r} (its "
                                 f"parameters: {known})")
            values[key] = _coerce(self.name, key, value, self.params[key])
        self.p = values

    def start(self, run) -> None:
        """Open the passes (default: one pass over the prompt, named 'base', recording nothing)."""
        run.open_pass("base", run.prompt.input_ids)

    def step(self, run) -> Choice:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, run, answer: str) -> tuple[str, bool]:
        """The final answer and whether it is an abstention (default: as generated)."""
        return answer, False

    @classmethod
    def tune_objective(cls, figures: dict[str, Any]) -> float | None:
        """What `rheads answer tune` maximizes over this method's settings, from one setting's figures on the tune
        items (`run.summarize`): its accuracy. None takes the setting out of the running."""
        return figures.get("accuracy")

    def settings(self) -> dict[str, Any]:
        """The resolved parameters (written to config.json)."""
        return dict(self.p)


def _coerce(method: str, key: str, value: Any, default: Any) -> Any:
    """`value` as the type of `default` (a text value from the command line is parsed); ParamError otherwise."""
    kind = type(default)
    if default is None or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
            raise ValueError
        if kind is float and not isinstance(value, bool):
            return float(value)
        if kind is int and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    raise ParamError("params", f"{method}.{key}={value}", f"give a {kind.__name__} (default {default!r})")


def parse_params(items: list[str] | None) -> dict[str, dict[str, str]]:
    """['cad.a=1', 'decore.mask=top:5', 'copy:k10.k=10'] -> {'cad': {'a': '1'}, 'decore': {'mask': 'top:5'},
    'copy:k10': {'k': '10'}} (values checked by the method's constructor; a variant's by its method's)."""
    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        name, eq, value = str(item).partition("=")
        method, dot, key = name.strip().partition(".")
        if not eq or not dot or not method or not key.strip():
            raise ParamError("params", item, "write METHOD.PARAM=VALUE, e.g. cad.a=1.0")
        out.setdefault(method, {})[key.strip()] = value.strip()
    return out
