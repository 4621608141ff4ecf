"""Suite task generators: prompts at the target length (at most it; one more haystack unit exceeds it), with the
chat template and without; RULER's record fields; seeded determinism; one-line errors."""

from __future__ import annotations

import pytest

from retrieval_heads.errors import ParamError
from retrieval_heads.evals.suite.common import TaskContext, sample_seed
from retrieval_heads.evals.suite.fit import make_sample
from retrieval_heads.evals.suite.prompt import PromptBuilder
from retrieval_heads.evals.suite.registry import RULER_ORDER, check_tasks, get_task, task_names
from suite_helpers import essay_file, fake_qa, tokenizer

RULER_KEYS = {"index", "input", "outputs", "length", "length_w_model_temp", "answer_prefix", "token_position_answer"}


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "chat"])
def prompt(request):
    return PromptBuilder(tokenizer(request.param), chat=request.param)


@pytest.fixture(scope="module")
def ctx_of(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("suite")
    essay, (qa, held) = essay_file(tmp), fake_qa(tmp)
    return lambda target: TaskContext(haystack=essay, target=target, qa_data=qa, heldout=held)


def test_the_issue_tasks_are_registered_in_ruler_order():
    names = task_names()
    assert [n for n in RULER_ORDER if n in names] == names[:12]
    assert {"niah_single_1", "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe",
            "qa_2"} <= set(names)
    assert get_task("qa_2").metric == "string_match_part" and get_task("vt").metric == "string_match_all"


@pytest.mark.parametrize("name", ["niah_single_1", "niah_single_2", "niah_multikey_2", "niah_multikey_3",
                                  "niah_multiquery", "vt", "cwe", "fwe", "qa_2"])
@pytest.mark.parametrize("target", [1300, 2000])
def test_prompt_is_the_largest_at_or_below_the_target(prompt, ctx_of, name, target):
    task, ctx = get_task(name), ctx_of(target)
    s = make_sample(task, ctx, prompt, target, 1, seed=7)
    assert len(s.input_ids) <= target
    assert s.input_ids == prompt.ids(s.input, s.answer_prefix)
    if s.units < (task.max_units(ctx) or 10**9):  # one more unit of haystack would not fit
        more = task.build(ctx, sample_seed(7, name, target, 1), s.units + 1, 1)
        assert prompt.count(more.input, more.answer_prefix) > target
    if name in ("niah_single_2", "niah_multiquery"):
        assert target - len(s.input_ids) < 8  # essay words: a few tokens at most
    rec = s.ruler()
    assert set(rec) == RULER_KEYS and rec["index"] == 1 and rec["outputs"]
    assert rec["length_w_model_temp"] == len(s.input_ids) + task.tokens_to_generate
    if prompt.chat:
        assert rec["length_w_model_temp"] > rec["length"]  # the template's tokens
    for gold in s.outputs:
        assert gold in s.input  # every answer is in the context


def test_samples_are_seeded(prompt, ctx_of):
    task = get_task("niah_single_2")
    a = make_sample(task, ctx_of(400), prompt, 400, 0, seed=1)
    assert make_sample(task, ctx_of(400), prompt, 400, 0, seed=1).ruler() == a.ruler()
    assert make_sample(task, ctx_of(400), prompt, 400, 1, seed=1).outputs != a.outputs
    assert make_sample(task, ctx_of(400), prompt, 400, 0, seed=2).outputs != a.outputs


def test_niah_templates_follow_ruler(prompt, ctx_of):
    one = make_sample(get_task("niah_single_1"), ctx_of(300), prompt, 300, 0, seed=0)
    assert one.input.startswith("A special magic number is hidden") and one.answer_prefix.endswith("text is")
    assert "The grass is green. The sky is blue." in one.input
    many = make_sample(get_task("niah_multivalue"), ctx_of(500), prompt, 500, 0, seed=0)
    assert many.input.startswith("Some special magic numbers are hidden") and len(many.outputs) == 4
    q = make_sample(get_task("niah_multiquery"), ctx_of(500), prompt, 500, 0, seed=0)
    assert ", and " in q.answer_prefix and len(q.outputs) == 4


def test_a_target_below_the_template_is_a_param_error(prompt, ctx_of):
    with pytest.raises(ParamError, match="too small for vt") as e:
        make_sample(get_task("vt"), ctx_of(50), prompt, 50, 0, seed=0)
    assert e.value.param == "lengths"


def test_unknown_and_repeated_tasks_are_param_errors():
    with pytest.raises(ParamError, match="unknown suite task: use one of niah_single_1"):
        check_tasks(["niah_single_2", "nope"])
    with pytest.raises(ParamError, match="vt named twice"):
        check_tasks(["vt", "vt"])


def test_the_answer_prefix_opens_the_assistant_turn(ctx_of):
    chat = PromptBuilder(tokenizer(True), chat=True)
    s = make_sample(get_task("niah_single_2"), ctx_of(500), chat, 500, 0, seed=0)
    text = chat.text(s.input, s.answer_prefix)
    assert text.startswith("<s><|user|>\n" + s.input) and text.endswith("<|end|>\n<|assistant|>\n" + s.answer_prefix)
    plain = PromptBuilder(tokenizer(False), chat=False)
    p = make_sample(get_task("niah_single_2"), ctx_of(500), plain, 500, 0, seed=0)
    assert plain.text(p.input, p.answer_prefix) == p.input + p.answer_prefix and p.input_ids[0] == 0  # BOS
