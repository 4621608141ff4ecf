"""The monitored prompt: context and question slots and character offsets, with and without a chat template, and
the one-line errors for an empty context, a missing question and a prompt over the model's context."""

from __future__ import annotations

import pytest

from retrieval_heads.errors import RHeadsError
from retrieval_heads.monitor.prompt import build_prompt
from tiny import bpe_tokenizer
from monitor_helpers import texts

CONTEXT = "The river town had an old market. The key to the Ashcombe observatory is kept under a loose floor tile."
QUESTION = "Where is the key to the Ashcombe observatory kept?"


def _check(tok, p):
    c0, c1 = p.context_slots
    q0, q1 = p.question_slots
    assert 0 < c0 < c1 <= q0 < q1 <= p.n
    # every context slot maps into the context string, in order, and together they cover all of it
    spans = [p.offsets[i] for i in range(c0, c1)]
    assert all(p.source_kind[i] == "context" for i in range(c0, c1))
    assert spans[0][0] == 0 and spans[-1][1] == len(CONTEXT)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    for i in range(c0, c1):
        a, b = p.offsets[i]
        piece = tok.decode([p.input_ids[i]])
        assert b > a and CONTEXT[a:b].strip() in piece
    assert tok.decode(p.input_ids[q0:q1]).strip() == QUESTION
    assert p.source_of(q0)[0] == "question" and p.source_of(0) is None
    assert all(p.offsets[i] is None for i in range(c1, q0))


def test_plain_prompt_maps_context_and_question(tok):
    p = build_prompt(tok, CONTEXT, QUESTION)
    assert p.input_ids[0] == tok.bos_token_id  # the tokenizer's BOS, once
    _check(tok, p)


def test_chat_prompt_maps_context_and_question():
    chat = ("{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tok = bpe_tokenizer(texts(), vocab_size=900, specials=["<s>", "</s>", "<unk>", "<|user|>", "<|end|>",
                                                           "<|assistant|>"], chat_template=chat)
    p = build_prompt(tok, CONTEXT, QUESTION)
    assert tok.decode(p.input_ids[:1]) == "<|user|>" and tok.decode(p.input_ids[-1:]) == "<|assistant|>"
    _check(tok, p)


def test_prompt_errors(tok):
    with pytest.raises(RHeadsError, match="context is empty"):
        build_prompt(tok, "  \n", QUESTION)
    with pytest.raises(RHeadsError, match="question is missing"):
        build_prompt(tok, CONTEXT, "")
    n = build_prompt(tok, CONTEXT, QUESTION).n
    build_prompt(tok, CONTEXT, QUESTION, max_context=n + 8, max_new_tokens=8)
    with pytest.raises(RHeadsError, match="over the model's context") as e:
        build_prompt(tok, CONTEXT, QUESTION, max_context=n + 7, max_new_tokens=8)
    assert "\n" not in str(e.value)
