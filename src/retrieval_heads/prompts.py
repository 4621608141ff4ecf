"""NIAH probes in the model's own tokens: haystack + needle + question, at a given length and depth.

`build_probe` returns a `Probe`: the prompt's token ids (special tokens included, no double BOS), its total
length (within a few tokens below the requested one, template and question included), and the token spans
of the inserted needle and of its answer. The needle goes at `depth` percent of the context, moved back to
the nearest preceding sentence end, as in the Wu et al. 2024 / gkamradt NIAH code; a short haystack is
repeated. Templates are named (`paper`, `default`) or literal format strings with `{context}` and
`{question}`; `parse_grid` reads `--lengths` / `--depths` specs.

Left out on purpose: running a model, scoring answers, batching, and choosing which haystack or needles
to use (`haystack.py`, `needles.py`). Needs a fast tokenizer (character offsets).
"""

from __future__ import annotations

import math
import re
import string
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from .errors import RHeadsError
from .needles import Needle

# ---------------------------------------------------------------- templates


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


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


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
    has_chat = _has_chat_template(tokenizer)
    use_chat = (has_chat and (registered is None or registered.chat_default)) if chat is None else chat
    if use_chat and not has_chat:
        raise RHeadsError("this tokenizer has no chat template: build the prompt without chat (chat=False) or use a chat model's tokenizer")
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


# ---------------------------------------------------------------- probes


@dataclass(frozen=True)
class Probe:
    input_ids: list[int]  # the full prompt as the model sees it, special tokens included
    answer_span: tuple[int, int]  # [start, end) in input_ids: tokens of needle.real_needle inside the needle
    needle_span: tuple[int, int]  # [start, end) in input_ids: tokens of the whole inserted needle
    context_span: tuple[int, int]  # [start, end) in input_ids: haystack text plus needle
    length: int  # len(input_ids)
    depth: float  # requested depth, percent of the context
    actual_depth: float  # percent of the haystack tokens that come before the needle
    needle: Needle
    prompt_text: str  # rendered text; input_ids may add the tokenizer's BOS in front of it (plain mode)


_SENTENCE_END = re.compile(r"[.!?](?=\s)")
_CONTEXT_SENTINEL = "\x00RHEADS_CONTEXT\x00"
_CACHE_SIZE = 8
# (id(tokenizer), text) -> (tokenizer, token start chars, token end chars); the tokenizer is kept to rule out id reuse.
_token_cache: OrderedDict[tuple[int, str], tuple[Any, list[int], list[int]]] = OrderedDict()


def _token_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """Start and end character of each token of `text` (no special tokens), cached per tokenizer."""
    key = (id(tokenizer), text)
    hit = _token_cache.get(key)
    if hit is not None and hit[0] is tokenizer:
        _token_cache.move_to_end(key)
        return hit[1], hit[2]
    offsets = _encode(tokenizer, text)[1]
    starts, ends = [s for s, _ in offsets], [e for _, e in offsets]
    _token_cache[key] = (tokenizer, starts, ends)
    while len(_token_cache) > _CACHE_SIZE:
        _token_cache.popitem(last=False)
    return starts, ends


def _encode(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    if not getattr(tokenizer, "is_fast", False):
        raise RHeadsError("building probes needs a fast tokenizer (character offsets): load it with use_fast=True")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def special_prefix(tokenizer: Any) -> list[int]:
    """Special tokens (BOS) the tokenizer puts in front of a plain text; trailing ones (EOS) are dropped."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return list(full[:i])
    return []


def _haystack_offsets(tokenizer: Any, haystack: str, n: int) -> tuple[str, list[int], list[int]]:
    """The haystack, repeated if needed, so it has at least n tokens; with its token start/end chars."""
    starts, ends = _token_offsets(tokenizer, haystack)
    if len(ends) >= n:
        return haystack, starts, ends
    reps = 2
    while reps * len(ends) < n + reps:  # joining may merge a token or two per seam
        reps *= 2
    text = "\n\n".join([haystack] * reps)
    starts, ends = _token_offsets(tokenizer, text)
    return text, starts, ends


def _place_needle(text: str, starts: list[int], ends: list[int], n: int, depth: float, needle: str) -> tuple[str, int]:
    """Context = first n haystack tokens with the needle inserted; returns (context, needle's char offset in it)."""
    context = text[: ends[n - 1]].rstrip() if n > 0 else ""  # text of haystack tokens [0, n)
    if not context:
        return needle, 0
    if depth >= 100:
        return context + " " + needle, len(context) + 1
    k = int(n * depth / 100)  # haystack token index in [0, n) where the needle would go
    p = starts[k] if depth > 0 else 0  # its character position
    cut = 0
    for m in _SENTENCE_END.finditer(context, 0, min(p + 1, len(context))):  # last sentence end at or before p
        cut = m.end()
    if cut == 0:
        return needle + " " + context, 0
    # context[cut] is the whitespace after the sentence end: "... end. NEEDLE<ws>Next ..."
    return context[:cut] + " " + needle + context[cut:], cut + 1


def _token_span(offsets: list[tuple[int, int]], a: int, b: int, shift: int) -> tuple[int, int]:
    """[start, end) of the tokens overlapping characters [a, b), shifted by `shift` prepended special tokens."""
    hits = [i for i, (s, e) in enumerate(offsets) if e > s and s < b and e > a]
    if not hits:
        return shift, shift
    return hits[0] + shift, hits[-1] + 1 + shift


def build_probe(
    tokenizer: Any,
    haystack: str,
    needle: Needle,
    length: int,
    depth: float,
    template: str | ResolvedTemplate = "default",
    chat: bool | None = None,
    *,
    max_context: int | None = None,
) -> Probe:
    """A NIAH prompt of at most `length` tokens in total (usually within a few of it), needle at `depth` percent."""
    if max_context is not None and length > max_context:
        raise RHeadsError(f"length {length} exceeds the model's context of {max_context} tokens: use --lengths up to {max_context}")
    if not 0 <= depth <= 100:
        raise RHeadsError(f"depth {depth} is outside 0-100: depths are percent of the context (0 = start, 100 = end)")
    if not haystack.strip():
        raise RHeadsError("the haystack is empty (only whitespace): give a haystack with some text in it")
    resolved = resolve_template(template, tokenizer, chat)
    haystack = haystack.strip()
    needle_text = needle.needle.strip()
    answer_in_needle = needle_text.find(needle.real_needle)
    if answer_in_needle < 0:
        raise RHeadsError(f"real_needle {needle.real_needle!r} is not a substring of needle {needle_text!r}: fix the needle")

    rendered = render_prompt(resolved, tokenizer, _CONTEXT_SENTINEL, needle.question)
    if rendered.count(_CONTEXT_SENTINEL) != 1:
        raise RHeadsError("the template does not reproduce {context} exactly once after rendering: fix the template")
    prefix, suffix = rendered.split(_CONTEXT_SENTINEL)
    specials = [] if resolved.chat else special_prefix(tokenizer)

    def assemble(n: int) -> tuple[str, int, list[int], list[tuple[int, int]]]:
        text, starts, ends = _haystack_offsets(tokenizer, haystack, n)
        context, needle_at = _place_needle(text, starts, ends, n, depth, needle_text)
        ids, offsets = _encode(tokenizer, prefix + context + suffix)
        lead = specials if ids[: len(specials)] != specials else []  # no double BOS if the text already has it
        return context, needle_at, lead + ids, offsets

    minimum = len(assemble(0)[2])  # template + question + needle, no haystack
    if length < minimum:
        raise RHeadsError(
            f"length {length} is too small: the template, question and needle alone take {minimum} tokens; "
            f"use --lengths of at least {minimum}"
        )

    # Fit the number n of haystack tokens so the whole prompt has <= length tokens, as close as we get.
    # Token counts are not additive at the seams (and the needle moves with n), so iterate on the miss.
    tried: dict[int, int] = {}
    best: tuple[int, int] | None = None  # (prompt tokens, n)
    n = length - minimum
    for _ in range(12):
        if n in tried:
            break
        total = len(assemble(n)[2])
        tried[n] = total
        if total <= length and (best is None or total > best[0]):
            best = (total, n)
        if total == length:
            break
        n = max(0, n + length - total)
    while best is None:  # every try overshot: walk down (n = 0 fits, checked above)
        n = max(0, min(tried) - max(1, tried[min(tried)] - length))
        tried[n] = len(assemble(n)[2])
        if tried[n] <= length:
            best = (tried[n], n)

    context, needle_at, input_ids, offsets = assemble(best[1])
    shift = len(input_ids) - len(offsets)  # special tokens put in front
    ctx_a = len(prefix)  # character offsets in the rendered text
    needle_a = ctx_a + needle_at
    answer_a = needle_a + answer_in_needle
    context_span = _token_span(offsets, ctx_a, ctx_a + len(context), shift)
    needle_span = _token_span(offsets, needle_a, needle_a + len(needle_text), shift)
    answer_span = _token_span(offsets, answer_a, answer_a + len(needle.real_needle), shift)

    decoded = tokenizer.decode(input_ids[answer_span[0] : answer_span[1]])
    if answer_span[0] >= answer_span[1] or " ".join(needle.real_needle.split()) not in " ".join(decoded.split()):
        raise RHeadsError(
            f"the answer {needle.real_needle!r} of needle {needle_text!r} does not survive tokenization "
            f"(its tokens decode to {decoded!r}): change the needle to use ordinary words"
        )

    haystack_tokens = (context_span[1] - context_span[0]) - (needle_span[1] - needle_span[0])
    before = needle_span[0] - context_span[0]  # haystack tokens before the needle
    actual_depth = 0.0 if haystack_tokens <= 0 else min(100.0, 100.0 * before / haystack_tokens)
    return Probe(
        input_ids=input_ids,
        answer_span=answer_span,
        needle_span=needle_span,
        context_span=context_span,
        length=len(input_ids),
        depth=float(depth),
        actual_depth=actual_depth,
        needle=needle,
        prompt_text=prefix + context + suffix,
    )


# ---------------------------------------------------------------- grids

_GRID_EXAMPLES = {"lengths": "1000,2000,4000 or 1000:4000:4", "depths": "0,50,100 or 0:100:5"}


def parse_grid(spec: str, kind: Literal["lengths", "depths"]) -> list[int | float]:
    """Parse "a,b,c" or inclusive evenly spaced "start:stop:count". Lengths: positive ints; depths: 0-100."""
    if kind not in _GRID_EXAMPLES:
        raise ValueError(f"kind must be 'lengths' or 'depths', not {kind!r}")
    bad = f"bad --{kind} {spec!r}: write a comma list or start:stop:count, e.g. {_GRID_EXAMPLES[kind]}"
    text = spec.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3 or "," in text:
                raise RHeadsError(bad)
            start, stop, count_f = (float(p) for p in parts)
            if count_f != int(count_f) or count_f < 1 or (count_f == 1 and start != stop):
                raise RHeadsError(f"{bad} (count must be a whole number >= 2)")
            count = int(count_f)
            raw = [start] if count == 1 else [start + (stop - start) * i / (count - 1) for i in range(count)]
            if kind == "lengths":
                raw = [float(round(v)) for v in raw]
        else:
            raw = [float(p) for p in text.split(",")]
    except (ValueError, OverflowError):
        raise RHeadsError(bad) from None
    if not raw or not all(math.isfinite(v) for v in raw):
        raise RHeadsError(bad)
    values: list[int | float] = []
    for v in raw:
        if kind == "lengths":
            if v != int(v) or v <= 0:
                raise RHeadsError(f"bad --lengths {spec!r}: lengths are positive whole numbers of tokens, e.g. {_GRID_EXAMPLES[kind]}")
            value: int | float = int(v)
        else:
            if not 0 <= v <= 100:
                raise RHeadsError(f"bad --depths {spec!r}: depths are percents from 0 to 100, e.g. {_GRID_EXAMPLES[kind]}")
            v = round(v, 4)
            value = int(v) if v == int(v) else v
        if value not in values:
            values.append(value)
    return values
