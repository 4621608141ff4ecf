"""Prompt templates: named or literal format strings with {context} and {question}, with or without the
tokenizer's chat template.

Built in: `default` (a context block and a short-answer instruction; a chat turn when the tokenizer has a
chat template) and `paper` (the paper code's plain prompt, never a chat turn). `register_template` adds
names; `resolve_template` fixes one for a tokenizer; `decide_chat` is the one chat decision the probes and
the task prompts share; `render_prompt` fills one in.

Left out on purpose: tokenization and needle placement (`build.py`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from ..errors import ParamError, RHeadsError

@dataclass(frozen=True)
class PromptTemplate:
    """A registered template. `text` becomes the user message under a chat template; `plain` is used without one."""

    name: str
    text: str
    plain: str
    chat_default: bool  # with chat=None, apply the tokenizer's chat template (if it has one) iff True


@dataclass(frozen=True)
class ResolvedTemplate:
    """A template fixed for one tokenizer: the format string to fill and whether to wrap it as a chat turn."""

    name: str | None  # None for a literal format string
    text: str  # format string with {context} and {question}
    chat: bool  # wrap text as a user message with tokenizer.apply_chat_template


_TEMPLATES: dict[str, PromptTemplate] = {}


def _check_format(text: str, what: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        raise RHeadsError(f"{what} is not a valid format string ({e}): write literal braces as {{{{ and }}}}") from None
    if sorted(fields) != ["context", "question"]:
        raise RHeadsError(
            f"{what} must contain {{context}} and {{question}} once each and no other {{fields}} (found {fields}); "
            "write literal braces as {{ and }}"
        )


def register_template(name: str, text: str, *, plain: str | None = None, chat_default: bool = True) -> None:
    """Register a named template. `plain` (default: `text`) is used when no chat template is applied."""
    _check_format(text, f"template {name!r}")
    _check_format(plain if plain is not None else text, f"plain form of template {name!r}")
    _TEMPLATES[name] = PromptTemplate(name, text, plain if plain is not None else text, chat_default)


def template_names() -> list[str]:
    """The registered template names, sorted."""
    return sorted(_TEMPLATES)


register_template(
    "paper",
    "{context}Based on the content of the book, Question: {question}\nAnswer:",
    chat_default=False,
)
register_template(
    "default",
    "<context>\n{context}\n</context>\n\nBased only on the context above, answer the question in a short sentence. "
    "Question: {question}",
    plain="<context>\n{context}\n</context>\n\nBased only on the context above, answer the question in a short sentence.\n"
    "Question: {question}\nAnswer:",
)


def decide_chat(tokenizer: Any, chat: bool | None, default: bool = True) -> bool:
    """Whether to wrap a prompt in the tokenizer's chat template. chat=None: iff the tokenizer has one and
    `default` allows it; chat=True on a tokenizer without one is a one-line error."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if chat and not has:
        raise ParamError("chat", chat, "this tokenizer has no chat template: build the prompt without chat "
                         "({no_chat}) or use a chat model's tokenizer")
    return (has and default) if chat is None else bool(chat)


def resolve_template(spec: str | ResolvedTemplate, tokenizer: Any, chat: bool | None = None) -> ResolvedTemplate:
    """Pick the format string and chat mode. chat=None: use the chat template iff the tokenizer has one and
    the template's default allows it (`paper` is used without)."""
    if isinstance(spec, ResolvedTemplate):
        return spec
    if spec in _TEMPLATES:
        registered: PromptTemplate | None = _TEMPLATES[spec]
        name: str | None = spec
    elif "{" in spec:
        _check_format(spec, "template")
        registered, name = None, None
    else:
        raise RHeadsError(
            f"unknown template {spec!r}: use one of {', '.join(template_names())}, "
            "or a format string with {context} and {question}"
        )
    use_chat = decide_chat(tokenizer, chat, default=registered is None or registered.chat_default)
    if registered is None:
        return ResolvedTemplate(name, spec, use_chat)
    return ResolvedTemplate(name, registered.text if use_chat else registered.plain, use_chat)


def render_prompt(template: ResolvedTemplate, tokenizer: Any, context: str, question: str) -> str:
    """The prompt text: the filled format string, wrapped as a user turn plus generation prompt in chat mode."""
    body = template.text.format(context=context, question=question)
    if not template.chat:
        return body
    out = tokenizer.apply_chat_template([{"role": "user", "content": body}], add_generation_prompt=True, tokenize=False)
    if not isinstance(out, str):
        raise TypeError(f"apply_chat_template(tokenize=False) returned {type(out).__name__}, expected str")
    return out
