"""Batched greedy decoding: rows end at their own EOS or text stop, and report why they ended."""

import torch

from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.capture.controller import AttentionController
from retrieval_heads.capture.decoding import generate_batch, text_stop
from tiny import tiny_model


class Numbers:
    """A stand-in tokenizer: token ids decode to their numbers."""

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(int(i)) for i in ids)


def _prompts():
    g = torch.Generator().manual_seed(3)
    return [torch.randint(3, 64, (n,), generator=g).tolist() for n in (12, 20)]


def test_rows_stop_one_by_one_at_their_text_stop_or_eos():
    model = use_rheads(tiny_model("llama"))
    free = generate_batch(model, _prompts(), 6, [], AttentionController(), 0)
    assert [g.reason for g in free] == ["length", "length"] and all(len(g.tokens) == 6 for g in free)
    mark = str(free[0].tokens[2])  # row 0 stops once this token appears (row 1 does not produce it early)
    stop = lambda text: mark in text.split()  # noqa: E731
    got = generate_batch(model, _prompts(), 6, [], AttentionController(), 0, tokenizer=Numbers(), stop=stop)
    first = next(i for i, t in enumerate(free[0].tokens) if str(t) == mark)
    assert got[0].tokens == free[0].tokens[:first + 1] and got[0].reason == "stop"
    n1 = next((i + 1 for i, t in enumerate(free[1].tokens) if str(t) == mark), 6)
    assert got[1].tokens == free[1].tokens[:n1]
    eos = free[1].tokens[1]
    ended = generate_batch(model, _prompts(), 6, [eos], AttentionController(), 0)
    assert ended[1].tokens == free[1].tokens[:free[1].tokens.index(eos) + 1] and ended[1].reason == "eos"


def test_text_stop_waits_for_the_answer_to_start():
    stop = text_stop(["\n"])
    assert not stop("\n\n  ") and not stop(" The answer") and stop(" The answer.\n")
    assert text_stop([]) is None and text_stop([""]) is None


def test_a_static_cache_implementation_in_generation_config_decodes_as_the_dynamic_cache():
    model = use_rheads(tiny_model("llama"))
    dyn = AttentionController(capture=True)
    want = generate_batch(model, _prompts(), 6, [], dyn, 0)
    model.generation_config.cache_implementation = "static"  # what a user may set; generate() used to raise
    try:
        ctl = AttentionController(capture=True)
        got = generate_batch(model, _prompts(), 6, [], ctl, 0)
        assert model.generation_config.cache_implementation == "static"  # left as the user set it
    finally:
        model.generation_config.cache_implementation = None
    assert [g.tokens for g in got] == [g.tokens for g in want] and all(len(g.tokens) == 6 for g in got)
    assert torch.equal(ctl.top1_positions(), dyn.top1_positions())
