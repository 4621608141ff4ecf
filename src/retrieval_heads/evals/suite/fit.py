"""A suite sample at a target token length: the largest haystack whose prompt fits.

`make_sample(task, ctx, prompt, target, index, seed)` searches the number n of haystack units (the task's
`unit`) for the largest n whose prompt, chat template and answer prefix included, has at most `target`
tokens: the prompt's token count is the target, or the largest below it that the task's unit allows (one
more unit would exceed the target). The search keeps count(lo) <= target < count(hi) and bisects to hi = lo + 1,
so this holds even where token counts are not monotone in n. The same (seed, task, target, index) gives the
same sample.

A `SuiteSample` carries RULER's record (`ruler()`: index, input, outputs, length, length_w_model_temp,
answer_prefix, token_position_answer) and the prompt's ids. RULER's `length` is the task text's tokens (input
and answer prefix, no template) plus `tokens_to_generate`; `length_w_model_temp` the same with the chat
template's tokens; `token_position_answer` the tokens of `input` before the first gold string (-1: absent).

Left out on purpose: checks against the model's context (`run.py` makes them, with the new-token budget).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ParamError
from .common import sample_seed
from .prompt import PromptBuilder
from .registry import Built, SuiteTask


@dataclass
class SuiteSample:
    task: str
    length: int  # the target (the run's length cell)
    index: int
    input: str
    answer_prefix: str
    outputs: list[str]
    input_ids: list[int]  # the prompt as the model sees it
    ruler_length: int
    ruler_length_w_model_temp: int
    token_position_answer: int
    units: int | None = None  # haystack units used (None: read from a RULER file)

    @property
    def id(self) -> str:
        return f"{self.task}/{self.length}/{self.index}"

    def ruler(self) -> dict:
        return {"index": self.index, "input": self.input, "outputs": self.outputs, "length": self.ruler_length,
                "length_w_model_temp": self.ruler_length_w_model_temp, "answer_prefix": self.answer_prefix,
                "token_position_answer": self.token_position_answer}


def finish(task: SuiteTask, prompt: PromptBuilder, built: Built, target: int, index: int,
           units: int | None = None, ids: list[int] | None = None) -> SuiteSample:
    """The `SuiteSample` of a built text (RULER's length fields computed here)."""
    ids = ids if ids is not None else prompt.ids(built.input, built.answer_prefix)
    plain = prompt.plain_count(built.input + built.answer_prefix)
    at = built.input.find(built.outputs[0]) if built.outputs else -1
    position = prompt.plain_count(built.input[:at]) if at >= 0 else -1
    gen = task.tokens_to_generate
    return SuiteSample(task.name, target, index, built.input, built.answer_prefix, list(built.outputs), ids,
                       plain + gen, len(ids) + gen, position, units)


def make_sample(task: SuiteTask, ctx, prompt: PromptBuilder, target: int, index: int, seed: int) -> SuiteSample:
    """The sample `index` of `task` at `target` tokens (see the module docstring)."""
    s = sample_seed(seed, task.name, target, index)
    memo: dict[int, tuple[Built, list[int]]] = {}

    def count(n: int) -> int:
        if n not in memo:
            b = task.build(ctx, s, n, index)
            memo[n] = (b, prompt.ids(b.input, b.answer_prefix))
        return len(memo[n][1])

    lo = task.min_units
    c_lo = count(lo)
    if c_lo > target:
        raise ParamError("lengths", target, f"too small for {task.name}: its prompt with {lo} {task.unit} already takes "
                         f"{c_lo} tokens; use lengths of at least {c_lo}")
    top = task.max_units(ctx)
    step = max(1, lo)
    per_unit = max(1e-3, (count(lo + step) - c_lo) / step) if top is None or lo + step <= top else 1.0
    guess = lo + max(1, int((target - c_lo) / per_unit))
    hi = guess if top is None else min(guess, top)
    if count(hi) <= target:  # grow until over the target (or at the task's largest)
        while count(hi) <= target:
            if top is not None and hi >= top:
                return finish(task, prompt, memo[hi][0], target, index, hi, memo[hi][1])
            lo, hi = hi, hi + max(1, (hi - task.min_units) // 8)
            hi = hi if top is None else min(top, hi)
    else:  # walk down in steps of an eighth until a try fits
        while (probe := hi - max(1, (hi - lo) // 8)) > lo:
            if count(probe) <= target:
                lo = probe
                break
            hi = probe
    while hi - lo > 1:  # count(lo) <= target < count(hi)
        mid = (lo + hi) // 2
        if count(mid) <= target:
            lo = mid
        else:
            hi = mid
    return finish(task, prompt, memo[lo][0], target, index, lo, memo[lo][1])
