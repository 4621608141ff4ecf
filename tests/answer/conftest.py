"""Fixtures of the answer tests: the tiny model and tokenizer (`answer_helpers`), its scores, an Answerer, and both
saved to a directory for the CLI."""

from __future__ import annotations

import pytest

from answer_helpers import make_scores, tiny_model, tiny_tokenizer


@pytest.fixture(scope="session")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def model(tok):
    return tiny_model(tok)


@pytest.fixture(scope="session")
def scores():
    return make_scores()


@pytest.fixture(scope="session")
def answerer(model, tok, scores):
    from retrieval_heads.answer.loop import Answerer

    return Answerer(model, tok, scores)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, model, tok):
    d = tmp_path_factory.mktemp("tiny-answer-model")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    make_scores().save(d / "scores.json")
    return d
