"""The monitored prompt: a context and a question rendered through a template, tokenized, with the cache slots
of the context and question tokens and each context token's character offsets in the context string.

`build_prompt(tokenizer, context, question, template, chat, max_context, max_new_tokens)` returns a `MonitorPrompt`.
The template is rendered once with sentinels in place of the context and the question, so the character range
of each in the rendered text is exact; tokens are mapped to those ranges through the fast tokenizer's offsets.
Slot i is prompt token i (one unpadded prompt). Bad input is a one-line `RHeadsError`: an empty context, a
missing question, a prompt that with its answer budget does not fit the model's context.

Left out on purpose: several contexts (a list of retrieved passages is joined by the caller) and truncating a
context that is too long (the user decides what to cut).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ParamError, RHeadsError
from ..probes.templates import ResolvedTemplate, render_prompt, resolve_template
from ..probes.tokens import encode, special_prefix

_CTX = "\x00RHEADS_CONTEXT\x00"
_QST = "\x00RHEADS_QUESTION\x00"


@dataclass(frozen=True)
class MonitorPrompt:
    input_ids: list[int]
    context: str
    question: str
    context_slots: tuple[int, int]  # [start, end) slots of the tokens overlapping the context text
    question_slots: tuple[int, int]  # [start, end) slots of the tokens overlapping the question text
    offsets: list[tuple[int, int] | None]  # per slot: (a, b) chars in `context` or `question`, None elsewhere
    source_kind: list[str]  # per slot: "context", "question" or "" (template, specials)

    @property
    def n(self) -> int:
        return len(self.input_ids)

    def source_of(self, slot: int) -> tuple[str, int, int] | None:
        """(kind, a, b) of a prompt slot inside the context or question, else None."""
        if 0 <= slot < self.n and self.offsets[slot] is not None:
            a, b = self.offsets[slot]
            return self.source_kind[slot], a, b
        return None


def _check_text(context: Any, question: Any) -> None:
    if not isinstance(context, str) or not context.strip():
        raise ParamError("context", _short(context), "the context is empty: give the document the answer should "
                         "come from")
    if not isinstance(question, str) or not question.strip():
        raise ParamError("question", _short(question), "the question is missing or empty: give the question to "
                         "answer")


def _short(value: Any) -> Any:
    return value[:40] if isinstance(value, str) else value


def build_prompt(tokenizer: Any, context: str, question: str, template: str | ResolvedTemplate = "default",
                 chat: bool | None = None, *, max_context: int | None = None, max_new_tokens: int = 0) -> MonitorPrompt:
    """Render, tokenize and map a (context, question) pair; see the module docstring."""
    _check_text(context, question)
    resolved = resolve_template(template, tokenizer, chat)
    rendered = render_prompt(resolved, tokenizer, _CTX, _QST)
    if rendered.count(_CTX) != 1 or rendered.count(_QST) != 1:
        raise RHeadsError("the template must reproduce {context} and {question} once each: fix the template")
    # fill the sentinels in order of appearance, recording each one's character range in the final text
    ranges, text, rest = {}, "", rendered
    while True:
        i, j = rest.find(_CTX), rest.find(_QST)
        hits = [(k, name) for k, name in ((i, "context"), (j, "question")) if k >= 0]
        if not hits:
            text += rest
            break
        k, name = min(hits)
        text += rest[:k]
        value = context if name == "context" else question
        ranges[name] = (len(text), len(text) + len(value))
        text += value
        rest = rest[k + len(_CTX if name == "context" else _QST):]
    ids, offs = encode(tokenizer, text)
    specials = [] if resolved.chat else special_prefix(tokenizer)
    lead = specials if ids[: len(specials)] != specials else []
    shift = len(lead)
    input_ids = lead + ids
    offsets: list[tuple[int, int] | None] = [None] * len(input_ids)
    kinds = [""] * len(input_ids)
    slots: dict[str, tuple[int, int]] = {}
    for name, (a, b) in ranges.items():
        hit = [i for i, (s, e) in enumerate(offs) if e > s and s < b and e > a]
        if not hit:
            raise RHeadsError(f"the {name} did not survive tokenization: give plain text")
        slots[name] = (hit[0] + shift, hit[-1] + 1 + shift)
        for i in hit:
            s, e = offs[i]
            offsets[i + shift] = (max(s, a) - a, min(e, b) - a)
            kinds[i + shift] = name
    total = len(input_ids) + max_new_tokens
    if max_context and total > max_context:
        raise RHeadsError(f"the prompt takes {len(input_ids)} tokens and the answer up to {max_new_tokens} more, over "
                          f"the model's context of {max_context}: shorten the context or use a longer-context model")
    return MonitorPrompt(input_ids, context, question, slots["context"], slots["question"], offsets, kinds)
