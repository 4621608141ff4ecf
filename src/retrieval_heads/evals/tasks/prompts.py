"""Task prompts: few-shot exemplars and the test question, as chat turns or plain "Question/Answer" blocks.

With a chat template, each exemplar is a user turn (instruction + question) and an assistant turn (its worked
solution for `cot`, the bare answer otherwise), then the question as the last user turn; without one, the
same as "Question: ...\\nAnswer: ..." blocks. The token span of the test question is kept, for the copy
analysis.

Left out on purpose: the probes' templates (`probes/templates.py`); only the chat decision is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...probes.templates import decide_chat
from ...probes.tokens import special_prefix, token_span
from .registry import INSTRUCTIONS, Item


@dataclass(frozen=True)
class TaskPrompt:
    text: str  # the rendered prompt (the chat template applied when chat)
    input_ids: list[int]  # what the model sees, special tokens included
    question_span: tuple[int, int]  # [start, end) token positions of the test question in input_ids
    chat: bool


def target(item: Item, mode: str) -> str:
    """What an exemplar's answer turn says in `mode`."""
    if mode == "cot":
        return item.solution or f"The answer is {item.answers[0]}."
    return item.answers[0]


def _user(mode: str, question: str) -> str:
    return f"{INSTRUCTIONS[mode]}\n\nQuestion: {question}"


def render(tokenizer: Any, item: Item, mode: str, exemplars: list[Item], chat: bool) -> str:
    if chat:
        msgs: list[dict[str, str]] = []
        for ex in exemplars:
            msgs += [{"role": "user", "content": _user(mode, ex.question)},
                     {"role": "assistant", "content": target(ex, mode)}]
        msgs.append({"role": "user", "content": _user(mode, item.question)})
        out = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        if not isinstance(out, str):
            raise TypeError(f"apply_chat_template(tokenize=False) returned {type(out).__name__}, expected str")
        return out
    blocks = [f"Question: {ex.question}\nAnswer: {target(ex, mode)}\n\n" for ex in exemplars]
    return f"{INSTRUCTIONS[mode]}\n\n" + "".join(blocks) + f"Question: {item.question}\nAnswer:"


def use_chat(tokenizer: Any, chat: bool | None) -> bool:
    return decide_chat(tokenizer, chat)


def build_prompt(tokenizer: Any, item: Item, mode: str, exemplars: list[Item], chat: bool) -> TaskPrompt:
    """The prompt of one item, tokenized, with the token span of its question."""
    text = render(tokenizer, item, mode, exemplars, chat)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)))
    ids = list(enc["input_ids"])
    lead = [] if chat else special_prefix(tokenizer)
    if lead and ids[: len(lead)] == lead:
        lead = []  # the text already starts with BOS (no double BOS)
    a = text.rfind(item.question)
    b = a + len(item.question)
    if "offset_mapping" in enc:
        span = token_span(enc["offset_mapping"], a, b, 0)
    else:  # slow tokenizer: count the tokens of the text before and through the question
        span = (len(tokenizer(text[:a], add_special_tokens=False)["input_ids"]),
                len(tokenizer(text[:b], add_special_tokens=False)["input_ids"]))
    return TaskPrompt(text, lead + ids, (span[0] + len(lead), span[1] + len(lead)), chat)
