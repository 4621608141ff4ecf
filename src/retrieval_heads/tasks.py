"""The task registry: items, prompts, answer extraction and scoring for reasoning and knowledge tasks.

A task is a `TaskSpec` (data, not code paths): where its items come from, which prompt modes it has, how
its answers are scored, and its inline few-shot exemplars. Built in (`rheads tasks` lists them):
- `gsm8k`: grade-school math, JSONL `{"question", "answer"}` with the answer ending in `#### N`; modes
  `direct` ("Answer with the number only") and `cot` (step by step, ending "The answer is N."); scored by
  exact numeric match of the extracted number. Items come from `--data` (a local JSONL, or a hub id when
  the `datasets` package and a network are there), else from the first existing of `LOCAL_GSM8K`.
- `closedbook-facts`: 62 short factual questions a small model answers from its weights
  (`data/closedbook_facts.jsonl`, `{"id", "question", "answers": [aliases]}`); mode `closedbook`; correct
  when any alias appears, case- and punctuation-insensitive on word boundaries, in the answer's first line.
- `vartrack` and `wordproblems`: context-referring tasks generated from a seed with `steps` operations
  ("x = 3. y = x + 4. z = y - 2. What is the value of z?" / "Ana has 5 coins. Ana finds 3 coins. ..."):
  everything needed is in the prompt; the answer is computed exactly. Item i depends only on (task, seed,
  steps, i), so `limit` takes a prefix. Modes `direct` and `cot`, scored like gsm8k.
- `qa`: any JSONL of `{"question", "answers"}` given with `--data`, scored like `closedbook-facts`.
`register_task(spec)` adds more.

Prompts (`build_prompt`): with a chat template, each exemplar is a user turn (instruction + question) and an
assistant turn (its worked solution for `cot`, the bare answer otherwise), then the question as the last
user turn; without one, the same as "Question: ...\\nAnswer: ..." blocks. The token span of the test
question is kept, for the copy analysis in `cot.py`.

Extraction (`extract_number`): the number after the first "answer is" (then "####", then "\\boxed{"), else
the last number; `direct` looks at the first non-empty line only. Commas, "$", units, percent signs,
negatives and decimals are handled; numbers compare by value ("12.0" == "12").

Left out on purpose: running models (`evaluate.py`), fractions and numbers written as words in math
answers, answer normalization beyond case/punctuation for text answers, and LLM judging.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from .errors import RHeadsError
from .prompts import special_prefix

MODES = ("cot", "direct", "closedbook")
INSTRUCTIONS = {
    "cot": 'Solve the problem step by step. End with "The answer is N." where N is the final number.',
    "direct": "Answer with the number only.",
    "closedbook": "Answer the question in a few words.",
}
LOCAL_GSM8K = ("shared/data/gsm8k/test.jsonl", "../shared/data/gsm8k/test.jsonl")  # tried relative to the cwd
STOP_MARKERS = ("\nQuestion:", "\n\nQuestion")  # a plain-prompt model starting the next exemplar


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    answers: tuple[str, ...]  # numeric tasks: (canonical number,); text tasks: accepted aliases
    solution: str = ""  # worked steps ending "The answer is N." (used for cot exemplars)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    answer: str  # "number" (exact numeric match) or "text" (alias containment in the first line)
    modes: tuple[str, ...]  # prompt modes, the first is the default
    source: str  # "file" (JSONL or hub) or "generated"
    fmt: str = "qa"  # record format of files: "gsm8k" or "qa"
    builtin: str | None = None  # packaged data file under retrieval_heads/data/
    local: tuple[str, ...] = ()  # local files tried (relative to the cwd) when no data is given
    hub: tuple[str, str | None, str] | None = None  # (dataset id, config, split) tried last
    generator: Callable[[random.Random, int], Item] | None = None  # (rng, steps) -> item, for "generated"
    exemplars: tuple[Item, ...] = ()  # inline few-shot exemplars
    shots: int = 4  # exemplars used by default
    max_new_tokens: dict[str, int] = field(default_factory=lambda: {"cot": 256, "direct": 16, "closedbook": 16})
    default_limit: int = 100  # items generated when no limit is given


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Add a task to the registry (`replace=True` to redefine a name)."""
    if spec.name in _TASKS and not replace:
        raise ValueError(f"a task named {spec.name!r} is already registered (pass replace=True)")
    bad = [m for m in spec.modes if m not in MODES]
    if bad or not spec.modes or spec.answer not in ("number", "text"):
        raise ValueError(f"task {spec.name!r}: modes must be among {MODES} and answer 'number' or 'text'")
    _TASKS[spec.name] = spec
    return spec


def task_names() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> TaskSpec:
    if name not in _TASKS:
        raise RHeadsError(f"unknown task {name!r}: use one of {', '.join(task_names())} (see `rheads tasks`)")
    return _TASKS[name]


def resolve_mode(spec: TaskSpec, mode: str | None) -> str:
    """The task's default mode for None; a one-line error for a mode the task does not have."""
    if mode is None:
        return spec.modes[0]
    if mode not in spec.modes:
        raise RHeadsError(f"task {spec.name!r} has no mode {mode!r}: use one of {', '.join(spec.modes)}")
    return mode


def format_tasks_table() -> str:
    rows = [("task", "answer", "modes", "data", "description")]
    for name in task_names():
        s = _TASKS[name]
        data = "generated (--steps, --seed)" if s.source == "generated" else \
            (f"built in ({s.builtin})" if s.builtin else ("--data JSONL" + (f" or hub {s.hub[0]}" if s.hub else "")))
        rows.append((name, s.answer, ",".join(s.modes), data, s.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows)


# ---------------------------------------------------------------------------------------- numbers

_NUM = re.compile(
    r"(?<![\w.])"  # not glued to a word ("x3") or to a previous number
    r"(?P<neg>[-\u2212])?(?:\$\s?)?"  # sign, then an optional dollar sign: -7, -$5, $ 5
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"  # 1,234.5 | 1234.5 | .5
)
_MARKERS = (re.compile(r"answer\s+is\s*[:=]?", re.I), re.compile(r"####"), re.compile(r"\\boxed\{"))


def normalize_number(text: str) -> str | None:
    """The canonical form of the first number in `text` ("1,234.50" -> "1234.5", "$-0" -> "0"), or None."""
    m = _NUM.search(text.strip())
    return _canonical(m) if m else None


def _canonical(m: re.Match) -> str | None:
    try:
        d = Decimal(m.group("num").replace(",", ""))
    except InvalidOperation:
        return None
    if m.group("neg"):
        d = -d
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def extract_number(text: str, first_line: bool = False) -> str | None:
    """The answer number of a generation, canonical (see `normalize_number`), or None when there is none.

    Order: the first number after the first "answer is", then after "####", then after "\\boxed{"
    (each within the rest of its line); else the last number. `first_line`: look at the first non-empty
    line only (direct answers).
    """
    text = cut_generation(text)
    if first_line:
        text = next((ln for ln in text.splitlines() if ln.strip()), "")
    for marker in _MARKERS:
        hit = marker.search(text)
        if hit:
            rest = text[hit.end():].split("\n", 1)[0]
            m = _NUM.search(rest)
            if m:
                return _canonical(m)
    found = list(_NUM.finditer(text))
    return _canonical(found[-1]) if found else None


def numbers_equal(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    x, y = normalize_number(a), normalize_number(b)
    return x is not None and x == y


# ---------------------------------------------------------------------------------------- text answers

_WORD = re.compile(r"\w+")


def _norm_words(text: str) -> str:
    return " ".join(_WORD.findall(text.lower().replace("_", " ")))


def first_line(text: str) -> str:
    """The first non-empty line of a generation (cut at the next "Question:")."""
    return next((ln.strip() for ln in cut_generation(text).splitlines() if ln.strip()), "")


def alias_match(text: str, aliases: tuple[str, ...] | list[str]) -> bool:
    """Any alias's words appear, adjacent and in order, in `text` (case/punctuation-insensitive)."""
    t = f" {_norm_words(text)} "
    return any(a and f" {a} " in t for a in (_norm_words(x) for x in aliases))


def cut_generation(text: str) -> str:
    """The generation up to where a plain-prompt model starts a new "Question:"."""
    cut = min((i for i in (text.find(m) for m in STOP_MARKERS) if i >= 0), default=len(text))
    return text[:cut].strip()


def extract(spec: TaskSpec, generation: str, mode: str) -> str | None:
    """What is scored: the canonical number (number tasks) or the first line (text tasks)."""
    if spec.answer == "number":
        return extract_number(generation, first_line=(mode == "direct"))
    line = first_line(generation)
    return line or None


def is_correct(spec: TaskSpec, extracted: str | None, item: Item) -> bool:
    if extracted is None:
        return False
    if spec.answer == "number":
        return numbers_equal(extracted, item.answers[0])
    return alias_match(extracted, item.answers)


# ---------------------------------------------------------------------------------------- loading


def _gsm8k_item(rec: dict[str, Any], i: int, source: str) -> Item:
    q, a = rec.get("question"), rec.get("answer")
    if not isinstance(q, str) or not isinstance(a, str) or "####" not in a:
        raise RHeadsError(f"{source}, record {i + 1}: expected {{\"question\", \"answer\"}} with the answer ending in '#### N'")
    gold = normalize_number(a.rsplit("####", 1)[1])
    if gold is None:
        raise RHeadsError(f"{source}, record {i + 1}: no number after '####' in the answer")
    steps = re.sub(r"<<[^>]*>>", "", a.rsplit("####", 1)[0]).strip()  # drop calculator annotations
    solution = (steps + "\n" if steps else "") + f"The answer is {gold}."
    return Item(str(rec.get("id", i)), q.strip(), (gold,), solution)


def _qa_item(rec: dict[str, Any], i: int, source: str) -> Item:
    q = rec.get("question")
    ans = rec.get("answers", rec.get("answer"))
    if isinstance(ans, str):
        ans = [ans]
    if not isinstance(q, str) or not isinstance(ans, list) or not ans or not all(isinstance(x, str) for x in ans):
        raise RHeadsError(f"{source}, record {i + 1}: expected {{\"question\", \"answers\": [\"alias\", ...]}}")
    return Item(str(rec.get("id", i)), q.strip(), tuple(ans), "")


_FORMATS: dict[str, Callable[[dict[str, Any], int, str], Item]] = {"gsm8k": _gsm8k_item, "qa": _qa_item}


def parse_records(records: list[dict[str, Any]], fmt: str, source: str) -> list[Item]:
    items = [_FORMATS[fmt](r, i, source) for i, r in enumerate(records)]
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):  # ids key the resumable records: make them unique by position
        items = [Item(f"{i}", it.question, it.answers, it.solution) for i, it in enumerate(items)]
    return items


def read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise RHeadsError(f"{path}, line {n}: not valid JSON ({e.msg}): give one JSON object per line") from None
    return out


def _hub_records(dataset: str, config: str | None, split: str) -> list[dict[str, Any]]:
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise RHeadsError(f"loading the hub dataset {dataset!r} needs the `datasets` package, which is not "
                          "installed: pass --data a local JSONL file") from None
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset, config, split=split)
    except Exception as e:  # network, unknown id, unknown split: all end the same way for the user
        raise RHeadsError(f"could not load the hub dataset {dataset!r} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}): pass --data a local JSONL file") from None
    return [dict(r) for r in ds]


def resolve_data(spec: TaskSpec, data: str | None) -> str:
    """Where a file task's items come from: a path, `builtin:<file>`, or `hub:<id>`."""
    if data:
        path = Path(data).expanduser()
        if path.is_file():
            return str(path)
        if path.suffix.lower() in (".jsonl", ".json") or data.startswith((".", "/", "~")):
            raise RHeadsError(f"data file {data!r} does not exist: check the path")
        return f"hub:{data}"
    if spec.builtin:
        return f"builtin:{spec.builtin}"
    for cand in spec.local:
        if Path(cand).is_file():
            return str(Path(cand))
    if spec.hub:
        return f"hub:{spec.hub[0]}"
    raise RHeadsError(f"task {spec.name!r} needs --data: a local JSONL file")


def load_items(spec: TaskSpec, data: str | None = None, *, limit: int | None = None, steps: int = 3,
               seed: int = 0, split: str | None = None) -> list[Item]:
    """The task's items, the first `limit` of them. Generated tasks use (seed, steps); file tasks `data`."""
    if limit is not None and limit < 1:
        raise RHeadsError(f"--limit must be at least 1 (got {limit})")
    if spec.source == "generated":
        if steps < 1:
            raise RHeadsError(f"--steps must be at least 1 (got {steps})")
        n = limit or spec.default_limit
        return [_generated(spec, seed, steps, i, "test") for i in range(n)]
    where = resolve_data(spec, data)
    if where.startswith("builtin:"):
        text = resources.files("retrieval_heads").joinpath("data", where[8:]).read_text(encoding="utf-8")
        records = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    elif where.startswith("hub:"):
        dataset = where[4:]
        cfg = spec.hub[1] if spec.hub and spec.hub[0] == dataset else None
        records = _hub_records(dataset, cfg, split or (spec.hub[2] if spec.hub else "test"))
    else:
        records = read_jsonl_records(Path(where))
    items = parse_records(records, spec.fmt, where)
    if not items:
        raise RHeadsError(f"{where} holds no items")
    return items[:limit] if limit else items


def load_exemplars(spec: TaskSpec, n: int, fewshot_file: str | None = None, *, steps: int = 3,
                   seed: int = 0) -> list[Item]:
    """n few-shot exemplars: the first n of `fewshot_file` (the task's format), generated ones (from a seed
    stream disjoint from the test items), or the task's inline ones."""
    if n <= 0:
        return []
    if fewshot_file:
        path = Path(fewshot_file).expanduser()
        if not path.is_file():
            raise RHeadsError(f"few-shot file {fewshot_file!r} does not exist: check the path")
        pool = parse_records(read_jsonl_records(path), spec.fmt, str(path))
    elif spec.source == "generated":
        pool = [_generated(spec, seed, steps, i, "fewshot") for i in range(n)]
    else:
        pool = list(spec.exemplars)
    if len(pool) < n:
        raise RHeadsError(f"asked for {n} few-shot exemplars but only {len(pool)} are available for task "
                          f"{spec.name!r}: use --shots {len(pool)} or give --fewshot-file")
    return pool[:n]


# ---------------------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Prompt:
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
    has = bool(getattr(tokenizer, "chat_template", None))
    if chat and not has:
        raise RHeadsError("this tokenizer has no chat template: drop --chat (plain prompts are used without one)")
    return has if chat is None else bool(chat)


def build_prompt(tokenizer: Any, item: Item, mode: str, exemplars: list[Item], chat: bool) -> Prompt:
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
        hits = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and s < b and e > a]
        span = (hits[0], hits[-1] + 1) if hits else (0, 0)
    else:  # slow tokenizer: count the tokens of the text before and through the question
        span = (len(tokenizer(text[:a], add_special_tokens=False)["input_ids"]),
                len(tokenizer(text[:b], add_special_tokens=False)["input_ids"]))
    return Prompt(text, lead + ids, (span[0] + len(lead), span[1] + len(lead)), chat)


# ---------------------------------------------------------------------------------------- generated tasks


def _generated(spec: TaskSpec, seed: int, steps: int, i: int, stream: str) -> Item:
    assert spec.generator is not None
    rng = random.Random(f"{spec.name}:{stream}:{seed}:{steps}:{i}")  # str seeds hash deterministically
    item = spec.generator(rng, steps)
    return Item(f"{spec.name}-s{seed}-st{steps}-{stream[0]}{i}", item.question, item.answers, item.solution)


_VARS = "abcdefghjkmnpqrstuvwxyz"


def gen_vartrack(rng: random.Random, steps: int) -> Item:
    """x = 3. y = x + 4. ... What is the value of <last>? Each variable builds on the previous one."""
    names = rng.sample(_VARS, steps + 1) if steps + 1 <= len(_VARS) else \
        [f"v{i}" for i in rng.sample(range(10 * steps), steps + 1)]
    value = rng.randint(1, 9)
    facts, sol = [f"{names[0]} = {value}."], [f"{names[0]} = {value}."]
    for k in range(1, steps + 1):
        c = rng.randint(1, 9)
        op = "-" if rng.random() < 0.5 and value - c >= 0 else "+"
        new = value + c if op == "+" else value - c
        facts.append(f"{names[k]} = {names[k - 1]} {op} {c}.")
        sol.append(f"{names[k]} = {names[k - 1]} {op} {c} = {value} {op} {c} = {new}.")
        value = new
    q = " ".join(facts) + f" What is the value of {names[-1]}?"
    return Item("", q, (str(value),), " ".join(sol) + f" The answer is {value}.")


_PEOPLE = ("Ana", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Leo", "Maya",
           "Nico", "Olga", "Pablo", "Rosa", "Sam", "Tara", "Victor")
_THINGS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells", "stamps", "cookies")
_ADD = ("{p} buys {c} more {t}.", "{o} gives {p} {c} {t}.", "{p} finds {c} {t}.", "{p} wins {c} {t} in a game.")
_SUB = ("{p} gives {c} {t} to {o}.", "{p} loses {c} {t}.", "{p} sells {c} {t}.")


def gen_wordproblems(rng: random.Random, steps: int) -> Item:
    """A person's count of things changed `steps` times (add, take away, double); how many at the end?"""
    p, o = rng.sample(_PEOPLE, 2)
    t = rng.choice(_THINGS)
    value = rng.randint(2, 20)
    facts, sol = [f"{p} has {value} {t}."], [f"{p} starts with {value} {t}."]
    for _ in range(steps):
        c = rng.randint(2, 9)
        r = rng.random()
        if r < 0.15 and value <= 50:
            facts.append(f"{p} doubles the number of {t}.")
            sol.append(f"{value} * 2 = {value * 2}.")
            value *= 2
        elif r < 0.55 and c <= value:
            facts.append(rng.choice(_SUB).format(p=p, o=o, c=c, t=t))
            sol.append(f"{value} - {c} = {value - c}.")
            value -= c
        else:
            facts.append(rng.choice(_ADD).format(p=p, o=o, c=c, t=t))
            sol.append(f"{value} + {c} = {value + c}.")
            value += c
    q = " ".join(facts) + f" How many {t} does {p} have now?"
    return Item("", q, (str(value),), " ".join(sol) + f" The answer is {value}.")


# ---------------------------------------------------------------------------------------- the built-in tasks

GSM8K_EXEMPLARS = (
    Item("ex1", "Tom has 3 boxes with 4 pencils in each box. He gives away 5 pencils. How many pencils does he "
         "have left?", ("7",), "Tom has 3 * 4 = 12 pencils. After giving away 5, he has 12 - 5 = 7 pencils.\n"
         "The answer is 7."),
    Item("ex2", "Pens cost $2 each. Maria buys 6 pens and pays with a $20 bill. How much change does she get?",
         ("8",), "6 pens cost 6 * 2 = $12. Her change is 20 - 12 = $8.\nThe answer is 8."),
    Item("ex3", "A train travels at 60 miles per hour for 3 hours, then at 40 miles per hour for 2 hours. How many "
         "miles does it travel in total?", ("260",), "First it travels 60 * 3 = 180 miles. Then it travels "
         "40 * 2 = 80 miles. In total it travels 180 + 80 = 260 miles.\nThe answer is 260."),
    Item("ex4", "Sara had 24 cookies. She ate a quarter of them and shared the rest equally among herself and 2 "
         "friends. How many cookies did each person get?", ("6",), "She ate 24 / 4 = 6 cookies, so 24 - 6 = 18 "
         "were left. Shared among 3 people, each got 18 / 3 = 6 cookies.\nThe answer is 6."),
)
CLOSEDBOOK_EXEMPLARS = (
    Item("ex1", "What is the capital of Australia?", ("Canberra",)),
    Item("ex2", "What colour is coal?", ("Black",)),
    Item("ex3", "How many wheels does a bicycle have?", ("Two",)),
)

register_task(TaskSpec(
    name="gsm8k", description="grade-school math word problems (JSONL question/answer with '#### N')",
    answer="number", modes=("direct", "cot"), source="file", fmt="gsm8k", local=LOCAL_GSM8K,
    hub=("openai/gsm8k", "main", "test"), exemplars=GSM8K_EXEMPLARS, shots=4))
register_task(TaskSpec(
    name="closedbook-facts", description="short factual questions answered from the model's weights",
    answer="text", modes=("closedbook",), source="file", fmt="qa", builtin="closedbook_facts.jsonl",
    exemplars=CLOSEDBOOK_EXEMPLARS, shots=3))
register_task(TaskSpec(
    name="vartrack", description="variable tracking: x = 3. y = x + 4. ... What is the value of z? (--steps)",
    answer="number", modes=("direct", "cot"), source="generated", generator=gen_vartrack, shots=2))
register_task(TaskSpec(
    name="wordproblems", description="generated multi-step word problems about one person's things (--steps)",
    answer="number", modes=("direct", "cot"), source="generated", generator=gen_wordproblems, shots=2))
register_task(TaskSpec(
    name="qa", description="any JSONL of {question, answers: [aliases]} given with --data, closed-book prompt",
    answer="text", modes=("closedbook",), source="file", fmt="qa", exemplars=CLOSEDBOOK_EXEMPLARS, shots=3))
