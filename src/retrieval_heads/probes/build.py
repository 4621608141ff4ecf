"""NIAH probes in the model's own tokens: haystack + needle + question, at a given length and depth.

`build_probe` returns a `Probe`: the prompt's token ids (special tokens included, no double BOS), its total
length (within a few tokens below the requested one, template and question included), and the token spans
of the context, the inserted needle and its answer. The needle goes at `depth` percent of the context,
moved back to the nearest preceding sentence end, as in the Wu et al. 2024 / gkamradt NIAH code; a short
haystack is repeated.

Left out on purpose: running a model, scoring answers, batching, and choosing which haystack or needles
to use (`haystack.py`, `needles.py`). Needs a fast tokenizer (character offsets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ParamError, RHeadsError
from .needles import Needle, locate_answer
from .templates import ResolvedTemplate, render_prompt, resolve_template
from .tokens import encode, special_prefix, token_offsets, token_span


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


def _haystack_offsets(tokenizer: Any, haystack: str, n: int) -> tuple[str, list[int], list[int]]:
    """The haystack, repeated if needed, so it has at least n tokens; with its token start/end chars."""
    starts, ends = token_offsets(tokenizer, haystack)
    if len(ends) >= n:
        return haystack, starts, ends
    reps = 2
    while reps * len(ends) < n + reps:  # joining may merge a token or two per seam
        reps *= 2
    text = "\n\n".join([haystack] * reps)
    starts, ends = token_offsets(tokenizer, text)
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
        raise ParamError("probe.lengths", length, f"exceeds the model's context of {max_context} tokens: use "
                         f"lengths up to {max_context}")
    if not 0 <= depth <= 100:
        raise RHeadsError(f"depth {depth} is outside 0-100: depths are percent of the context (0 = start, 100 = end)")
    if not haystack.strip():
        raise RHeadsError("the haystack is empty (only whitespace): give a haystack with some text in it")
    resolved = resolve_template(template, tokenizer, chat)
    haystack = haystack.strip()
    needle_text = needle.needle.strip()
    found = locate_answer(needle_text, needle.real_needle)
    if found is None:
        raise RHeadsError(f"real_needle {needle.real_needle!r} does not occur in needle {needle_text!r}: fix the needle")
    answer_in_needle, answer_end, _ = found
    answer_text = needle_text[answer_in_needle:answer_end]  # the needle's own text of the answer

    rendered = render_prompt(resolved, tokenizer, _CONTEXT_SENTINEL, needle.question)
    if rendered.count(_CONTEXT_SENTINEL) != 1:
        raise RHeadsError("the template does not reproduce {context} exactly once after rendering: fix the template")
    prefix, suffix = rendered.split(_CONTEXT_SENTINEL)
    specials = [] if resolved.chat else special_prefix(tokenizer)

    def assemble(n: int) -> tuple[str, int, list[int], list[tuple[int, int]]]:
        text, starts, ends = _haystack_offsets(tokenizer, haystack, n)
        context, needle_at = _place_needle(text, starts, ends, n, depth, needle_text)
        ids, offsets = encode(tokenizer, prefix + context + suffix)
        lead = specials if ids[: len(specials)] != specials else []  # no double BOS if the text already has it
        return context, needle_at, lead + ids, offsets

    minimum = len(assemble(0)[2])  # template + question + needle, no haystack
    if length < minimum:
        raise ParamError("probe.lengths", length, f"too small: the template, question and needle alone take "
                         f"{minimum} tokens; use lengths of at least {minimum}")

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
    context_span = token_span(offsets, ctx_a, ctx_a + len(context), shift)
    needle_span = token_span(offsets, needle_a, needle_a + len(needle_text), shift)
    answer_span = token_span(offsets, answer_a, answer_a + len(answer_text), shift)

    decoded = tokenizer.decode(input_ids[answer_span[0] : answer_span[1]])
    if answer_span[0] >= answer_span[1] or " ".join(answer_text.split()) not in " ".join(decoded.split()):
        raise RHeadsError(
            f"the answer {answer_text!r} of needle {needle_text!r} does not survive tokenization "
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
