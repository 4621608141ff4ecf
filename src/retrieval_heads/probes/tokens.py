"""Tokens and character offsets: encoding with offsets, the special tokens a tokenizer puts in front of
plain text, and the token span of a character range. Shared by NIAH probes and task prompts.

Left out on purpose: slow (non-fast) tokenizers, which give no offsets: they get a one-line error.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..errors import RHeadsError

_CACHE_SIZE = 8
# (id(tokenizer), text) -> (tokenizer, token start chars, token end chars); the tokenizer is kept to rule out id reuse.
_token_cache: OrderedDict[tuple[int, str], tuple[Any, list[int], list[int]]] = OrderedDict()


def token_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """Start and end character of each token of `text` (no special tokens), cached per tokenizer."""
    key = (id(tokenizer), text)
    hit = _token_cache.get(key)
    if hit is not None and hit[0] is tokenizer:
        _token_cache.move_to_end(key)
        return hit[1], hit[2]
    offsets = encode(tokenizer, text)[1]
    starts, ends = [s for s, _ in offsets], [e for _, e in offsets]
    _token_cache[key] = (tokenizer, starts, ends)
    while len(_token_cache) > _CACHE_SIZE:
        _token_cache.popitem(last=False)
    return starts, ends


def encode(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
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


def token_span(offsets: list[tuple[int, int]], a: int, b: int, shift: int) -> tuple[int, int]:
    """[start, end) of the tokens overlapping characters [a, b), shifted by `shift` prepended special tokens."""
    hits = [i for i, (s, e) in enumerate(offsets) if e > s and s < b and e > a]
    if not hits:
        return shift, shift
    return hits[0] + shift, hits[-1] + 1 + shift
