"""qa_2 over a fake HaluEval QA file: reserved rows are never used (not as questions, not as distractors), the
reserved-rows list is required, and missing files are one-line errors."""

from __future__ import annotations

import pytest

from retrieval_heads.errors import ParamError, RHeadsError
from retrieval_heads.evals.suite import qadata
from retrieval_heads.evals.suite.common import TaskContext
from retrieval_heads.evals.suite.fit import make_sample
from retrieval_heads.evals.suite.prompt import PromptBuilder
from retrieval_heads.evals.suite.registry import get_task
from suite_helpers import MARKER, fake_qa, tokenizer


def test_reserved_rows_never_appear(tmp_path):
    data, held = fake_qa(tmp_path, rows=40)
    prompt = PromptBuilder(tokenizer(chat=False), chat=False)
    task = get_task("qa_2")
    ctx = TaskContext(target=6000, qa_data=data, heldout=held)
    seen_docs = set()
    for i in range(40):  # more samples than usable rows: every row is asked, and every prompt holds all docs
        s = make_sample(task, ctx, prompt, 6000, i, seed=3)
        assert MARKER not in s.input and all(MARKER not in o for o in s.outputs)
        seen_docs.update(line for line in s.input.split("\n") if line.startswith("Paragraph"))
    assert len(seen_docs) == 40 - 6  # every usable row showed up somewhere: the large case was exercised
    rows = qadata.load_rows(data, held)
    assert {r.line for r in rows}.isdisjoint({0, 3, 7, 11, 20, 33}) and len(rows) == 34


def test_gold_paragraph_sits_among_distractors(tmp_path):
    data, held = fake_qa(tmp_path)
    prompt = PromptBuilder(tokenizer(chat=False), chat=False)
    s = make_sample(get_task("qa_2"), TaskContext(target=1500, qa_data=data, heldout=held), prompt, 1500, 0, seed=0)
    keeper = s.outputs[0]
    assert s.input.count("Document ") >= 3 and s.input.count(f"Its keeper is {keeper}.") == 1
    assert s.answer_prefix == " Answer:" and s.input.rstrip().endswith("?")


def test_without_the_reserved_rows_list_qa_is_refused(tmp_path, monkeypatch):
    data, _ = fake_qa(tmp_path)
    monkeypatch.setattr(qadata, "_REPO", tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RHeadsError, match="qa_2 refused: the reserved-rows list") as e:
        get_task("qa_2").check(TaskContext(qa_data=data))
    assert "\n" not in str(e.value)
    with pytest.raises(ParamError, match="no such file"):
        get_task("qa_2").check(TaskContext(qa_data=data, heldout=str(tmp_path / "missing.txt")))


def test_missing_dataset_points_at_setup(tmp_path, monkeypatch):
    _, held = fake_qa(tmp_path)
    monkeypatch.setenv("RHEADS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RHeadsError, match="setup.sh --suite-data"):
        get_task("qa_2").check(TaskContext(heldout=held))
