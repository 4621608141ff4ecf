"""The task registry without a model: answer extraction and scoring on fixed strings, loading, generated tasks."""

from __future__ import annotations

import json
import re

import pytest

from retrieval_heads.cli.flags import cli_message
from retrieval_heads.errors import RHeadsError
from retrieval_heads.evals.tasks.loading import load_exemplars, load_items
from retrieval_heads.evals.tasks.numbers import extract_number, normalize_number, numbers_equal
from retrieval_heads.evals.tasks.registry import (INSTRUCTIONS, Item, TaskSpec, extract, format_tasks_table,
                                                        get_task, is_correct, register_task, resolve_mode, task_names)
from retrieval_heads.evals.tasks.text import alias_match

# ------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("text, expected", [
    ("1,234", "1234"),
    ("$5", "5"),
    ("-7", "-7"),
    ("12.0", "12"),
    ("The answer is 42.", "42"),
    ("#### 18", "18"),
    ("Janet makes 9 * 2 = $18 every day.\n#### 18", "18"),
    ("16 - 3 - 4 = 9 eggs, so she sells 9 * 2 = 18 dollars", "18"),  # last number; '- 3' is not -3
    ("The answer is $1,234.50.", "1234.5"),
    ("The final answer is: **-3**", "-3"),
    ("The answer is 7 apples, not 9.", "7"),  # the number right after the marker, not the last one
    ("So the total is 5kg.", "5"),  # units
    ("It went up by 50%.", "50"),
    ("x = -7", "-7"),
    ("3-4", "4"),  # a minus between numbers is an operator
    ("The answer is 0.50", "0.5"),
    ("$ 1,000,000 in total", "1000000"),
    ("\\boxed{36}", "36"),
    ("First 3 + 4 = 7. The answer is 7.\nQuestion: What is 2 + 2?\nAnswer: 4", "7"),  # cut at the next question
    ("no digits here", None),
    ("", None),
])
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_direct_answers_use_the_first_line():
    assert extract_number("18\n\nExplanation: 16 - 3 - 4 = 9", first_line=True) == "18"
    assert extract_number("\n  $1,234 dollars\n5", first_line=True) == "1234"
    assert extract_number("18\n\nExplanation: 16 - 3 - 4 = 9") == "9"  # without first_line: the last number


def test_normalize_and_compare_numbers():
    assert normalize_number("12.0") == "12" and normalize_number("-0") == "0" and normalize_number("0.250") == "0.25"
    assert numbers_equal("12.0", "12") and numbers_equal("1,234", "1234") and numbers_equal("$5", "5.00")
    assert not numbers_equal("-7", "7") and not numbers_equal(None, "7") and not numbers_equal("12.5", "12")


def test_gsm8k_scoring_on_generations():
    spec = get_task("gsm8k")
    item = Item("1", "q", ("1234",))
    for gen in ("Step 1 ... The answer is 1,234.", "#### 1234", "so $1,234.00 in total", "The answer is 1234"):
        assert is_correct(spec, extract(spec, gen, "cot"), item), gen
    assert not is_correct(spec, extract(spec, "The answer is 1233.", "cot"), item)
    assert not is_correct(spec, extract(spec, "I do not know", "cot"), item)
    assert is_correct(spec, extract(spec, "1234\nBecause 1000 + 234 = 1234.5", "direct"), item)


# ------------------------------------------------------------------------------------------- closed book


def test_closedbook_alias_scoring():
    spec = get_task("closedbook-facts")
    item = Item("x", "What is the capital of the United States?", ("Washington", "Washington, D.C."))
    assert is_correct(spec, extract(spec, "It is washington, d.c.!", "closedbook"), item)
    assert is_correct(spec, extract(spec, "\n\nWASHINGTON\nmore text", "closedbook"), item)
    assert not is_correct(spec, extract(spec, "New York\nWashington", "closedbook"), item)  # first line only
    assert not is_correct(spec, extract(spec, "Washingtonia", "closedbook"), item)  # word boundaries
    assert not is_correct(spec, extract(spec, "", "closedbook"), item)
    assert alias_match("The Nile.", ["Nile"]) and alias_match("H2O", ["h2o"]) and not alias_match("cold", ["hot"])


def test_closedbook_facts_data():
    items = load_items(get_task("closedbook-facts"))
    assert 55 <= len(items) <= 70
    assert len({it.id for it in items}) == len(items) and len({it.question for it in items}) == len(items)
    assert all(it.question.endswith("?") and it.answers and all(a.strip() for a in it.answers) for it in items)
    france = next(it for it in items if "France" in it.question)
    assert france.answers == ("Paris",)
    assert [it.id for it in load_items(get_task("closedbook-facts"), limit=5)] == [it.id for it in items[:5]]
    # the exemplars do not give answers away
    ex = load_exemplars(get_task("closedbook-facts"), 3)
    assert not {a.lower() for e in ex for a in e.answers} & {a.lower() for it in items for a in it.answers}


# ------------------------------------------------------------------------------------------- generated tasks


def _eval_vartrack(question: str) -> tuple[str, int]:
    env: dict[str, int] = {}
    facts, target = question.rsplit(" What is the value of ", 1)
    for stmt in facts.split(". "):
        name, expr = stmt.rstrip(".").split(" = ")
        env[name] = eval(expr, {}, dict(env))  # noqa: S307 - our own generated arithmetic
    return target.rstrip("?"), env[target.rstrip("?")]


def _eval_wordproblem(question: str) -> int:
    sentences = [s for s in re.split(r"(?<=\.) ", question.split(" How many ")[0])]
    person = sentences[0].split()[0]
    value = int(sentences[0].split()[2])
    for s in sentences[1:]:
        n = re.search(r"\d+", s)
        if "doubles" in s:
            value *= 2
        elif s.startswith(person) and any(w in s for w in (" gives ", " loses ", " sells ")):
            value -= int(n.group())
        else:  # buys, finds, wins, or someone else gives to the person
            value += int(n.group())
    return value


@pytest.mark.parametrize("name", ["vartrack", "wordproblems"])
@pytest.mark.parametrize("steps", [1, 3, 6])
def test_generated_tasks_are_deterministic_and_correct(name, steps):
    spec = get_task(name)
    a = load_items(spec, limit=30, steps=steps, seed=7)
    b = load_items(spec, limit=30, steps=steps, seed=7)
    assert a == b and len(a) == 30 and len({it.id for it in a}) == 30
    assert load_items(spec, limit=10, steps=steps, seed=7) == a[:10]  # limit takes a prefix
    assert load_items(spec, limit=30, steps=steps, seed=8) != a
    for it in a:
        answer = int(it.answers[0])
        if name == "vartrack":
            _, value = _eval_vartrack(it.question)
            assert it.question.count(" = ") == steps + 1
        else:
            value = _eval_wordproblem(it.question)
            assert it.question.count(". ") == steps + 1  # the start, then one sentence per step
        assert value == answer >= 0
        assert it.solution.endswith(f"The answer is {answer}.")
        assert extract_number(it.solution) == it.answers[0]
    shots = load_exemplars(spec, 2, steps=steps, seed=7)
    assert len(shots) == 2 and not {s.question for s in shots} & {it.question for it in a}


def test_vartrack_example():
    item = load_items(get_task("vartrack"), limit=1, steps=2, seed=0)[0]
    assert re.fullmatch(r"\w = \d\. \w = \w [+-] \d\. \w = \w [+-] \d\. What is the value of \w\?", item.question)


# ------------------------------------------------------------------------------------------- loading


GSM = [
    {"question": "Janet has 16 eggs and eats 3. How many are left?", "answer": "16 - 3 = <<16-3=13>>13\n#### 13"},
    {"question": "A pen costs $2. How much do 600 pens cost?", "answer": "600 * 2 = <<600*2=1200>>1200\n#### 1,200"},
    {"question": "It is -3 degrees and drops 4. What is it now?", "answer": "-3 - 4 = -7\n#### -7"},
]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_gsm8k_from_local_jsonl(tmp_path):
    spec = get_task("gsm8k")
    items = load_items(spec, _write(tmp_path / "test.jsonl", GSM))
    assert [it.answers[0] for it in items] == ["13", "1200", "-7"]
    assert items[0].solution == "16 - 3 = 13\nThe answer is 13."  # calculator annotations dropped
    assert len(load_items(spec, str(tmp_path / "test.jsonl"), limit=2)) == 2
    shots = load_exemplars(spec, 2, _write(tmp_path / "train.jsonl", GSM))
    assert [s.question for s in shots] == [GSM[0]["question"], GSM[1]["question"]]
    assert [s.question for s in load_exemplars(spec, 4)] == [e.question for e in spec.exemplars]  # inline default
    with pytest.raises(RHeadsError, match="only 3"):
        load_exemplars(spec, 4, str(tmp_path / "train.jsonl"))


def test_loading_errors(tmp_path, monkeypatch):
    spec = get_task("gsm8k")
    with pytest.raises(RHeadsError, match="does not exist"):
        load_items(spec, str(tmp_path / "missing.jsonl"))
    with pytest.raises(RHeadsError, match="#### N"):
        load_items(spec, _write(tmp_path / "bad.jsonl", [{"question": "q", "answer": "12"}]))
    (tmp_path / "torn.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"quest')
    with pytest.raises(RHeadsError, match="line 2"):
        load_items(spec, str(tmp_path / "torn.jsonl"))
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *a, **k):
        if name == "datasets":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(RHeadsError, match="pass a local JSONL file as data") as e:
        load_items(spec, "openai/gsm8k")
    assert cli_message(e.value).startswith("--data openai/gsm8k: ") and cli_message(e.value).endswith("as --data")
    with pytest.raises(RHeadsError, match="needs data: a local JSONL file as data") as e:
        load_items(get_task("qa"))
    assert "--" not in str(e.value) and "as --data" in cli_message(e.value)


def test_registry():
    assert {"gsm8k", "closedbook-facts", "vartrack", "wordproblems", "qa"} <= set(task_names())
    assert resolve_mode(get_task("gsm8k"), None) == "direct" and resolve_mode(get_task("gsm8k"), "cot") == "cot"
    with pytest.raises(RHeadsError, match="no mode 'cot'"):
        resolve_mode(get_task("closedbook-facts"), "cot")
    with pytest.raises(RHeadsError, match="unknown task 'nope'"):
        get_task("nope")
    table = format_tasks_table()
    assert all(name in table for name in task_names())
    assert "number only" in INSTRUCTIONS["direct"] and "The answer is N." in INSTRUCTIONS["cot"]


def test_register_a_task(tmp_path):
    spec = register_task(TaskSpec(name="test-capitals", description="d", answer="text", modes=("closedbook",),
                                  source="file", fmt="qa", exemplars=(Item("e", "Capital of Peru?", ("Lima",)),),
                                  shots=1), replace=True)
    items = load_items(spec, _write(tmp_path / "c.jsonl", [{"question": "Capital of Chile?", "answer": "Santiago"}]))
    assert items == [Item("0", "Capital of Chile?", ("Santiago",))]
    with pytest.raises(ValueError, match="already registered"):
        register_task(spec)


@pytest.mark.parametrize("text", [
    "First 3 + 4 = 7.\nThe answer is 7.\nLet's check with Python: 7 - 1 = 6, so 6.",
    "The answer is $1,234.50 in total.\nBut wait, the answer is 99.",
    "We get 12.\n\nQuestion: Tom has 5 apples. The answer is 3.",
    "The answer is: \\(48\\).\n```python\nprint(48.0)\n```\n48.0",
    "#### 5\nThe answer is 7.\n",
    "no number yet; the answer is\nabout twenty, say 20.\nok 21",
])
def test_stopping_at_the_answer_line_never_changes_the_extracted_answer(text):
    from retrieval_heads.evals.tasks.numbers import answer_line_complete

    stops = [i for i in range(1, len(text) + 1) if answer_line_complete(text[:i])]
    for i in stops:
        assert extract_number(text[:i]) == extract_number(text), (i, text[:i])
    assert answer_line_complete(text) == bool(stops)


def test_the_answer_line_stop_waits_for_the_line_to_end():
    from retrieval_heads.evals.tasks.numbers import answer_line_complete

    assert not answer_line_complete("The answer is 1,23")  # more digits may come
    assert not answer_line_complete("The answer is 12.")
    assert answer_line_complete("The answer is 12.\n")
    assert not answer_line_complete("So the answer is\n")  # no number on the line: extraction looks further
