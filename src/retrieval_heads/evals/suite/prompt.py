"""A suite prompt in the model's tokens: RULER's `input` as the user turn of the tokenizer's chat template, then
`answer_prefix` at the start of the assistant turn (RULER's convention); without a chat template, the plain
text `input + answer_prefix` after the tokenizer's BOS (RULER's `base` template).

`PromptBuilder(tokenizer, chat)` renders the chat template once around a sentinel and keeps the text before
and after the user content, so each prompt is one tokenization of the whole text (no seams between pieces).

Left out on purpose: system prompts of our own (the model's chat template adds its default one, if any), and
slow tokenizers (one-line error from `probes/tokens.py`).
"""

from __future__ import annotations

from typing import Any

from ...errors import RHeadsError
from ...probes.templates import decide_chat
from ...probes.tokens import encode, special_prefix

_SENTINEL = "\x00RHEADS_SUITE_INPUT\x00"


class PromptBuilder:
    def __init__(self, tokenizer: Any, chat: bool | None = None):
        self.tokenizer = tokenizer
        self.chat = decide_chat(tokenizer, chat)
        if self.chat:
            text = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], add_generation_prompt=True,
                                                 tokenize=False)
            if not isinstance(text, str) or text.count(_SENTINEL) != 1:
                raise RHeadsError("the tokenizer's chat template does not reproduce the user message exactly once: "
                                  "use the plain prompt (chat off)")
            self.head, self.tail = text.split(_SENTINEL)
            self.specials: list[int] = []
        else:
            self.head, self.tail = "", ""
            self.specials = special_prefix(tokenizer)

    def text(self, input: str, answer_prefix: str) -> str:
        return self.head + input + self.tail + answer_prefix

    def ids(self, input: str, answer_prefix: str) -> list[int]:
        """The prompt's token ids, special tokens included, no double BOS."""
        ids = encode(self.tokenizer, self.text(input, answer_prefix))[0]
        lead = self.specials if ids[: len(self.specials)] != self.specials else []
        return lead + ids

    def count(self, input: str, answer_prefix: str) -> int:
        return len(self.ids(input, answer_prefix))

    def plain_count(self, text: str) -> int:
        """Tokens of `text` alone, no special tokens (RULER's `length` counts the task text this way)."""
        return len(encode(self.tokenizer, text)[0]) if text else 0
