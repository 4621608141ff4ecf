"""The answering loop on the real SmolLM2-135M-Instruct (integration: loads the GGUF model, about 30 s): greedy
through the loop equals the monitor's own greedy generation (transformers' `generate`, chat template, end tokens),
and DeCoRe's masked pass really changes the next-token distribution."""

from __future__ import annotations

import pytest
import torch

from retrieval_heads.answer import get_method_class

pytestmark = pytest.mark.integration

CONTEXT = ("The Elmstead Public Library opens at 9 a.m. on weekdays. A library card costs four euros a year for "
           "adults. The head librarian is Tobias Rennick.")
QUESTION = "Who is the head librarian?"


@pytest.fixture(scope="module")
def answerer():
    from retrieval_heads.answer.loop import Answerer
    from retrieval_heads.models.loading import load_model

    model, tok = load_model("smollm2-135m")
    return Answerer(model, tok, "docs/runs/smollm2/scores.json")


def test_greedy_loop_equals_generate(answerer):
    got = answerer.answer(get_method_class("greedy")(), CONTEXT, QUESTION, 16)
    rep = answerer.monitor.run(CONTEXT, QUESTION, max_new_tokens=16)
    assert got.generated_ids == [t.token_id for t in rep.tokens]


def test_decore_masked_pass_differs_from_the_base(answerer):
    run = answerer.decoding(CONTEXT, QUESTION, 8)
    method = get_method_class("decore")()
    method.start(run)
    base, masked = run.passes["base"].logits(), run.passes["masked"].logits()
    assert not torch.allclose(base, masked, atol=1e-3)
    got = method.step(run)
    lb, lm = torch.log_softmax(base, -1), torch.log_softmax(masked, -1)
    h = float(-(lb.exp() * lb).sum())
    torch.testing.assert_close(got.scores, lb + h * (lb - lm))
