"""The one decoding loop every answering method runs in, and the `Answerer` that sets it up per question.

`Answerer(model, tokenizer, scores, threshold=0.1, template="default", chat=None)` owns a `Monitor` (its
retrieval heads, prompt and end tokens are the methods' too, and it scores every answer). `answerer.answer(
method, context, question, max_new_tokens)` builds a `Decoding` (what a method's `start`/`step`/`finish` read:
`prompt`, `heads`, `weights`, `scores`, `texts`, `passes`, `tokens`, `open_pass`, `no_context_ids`, `score`) and
runs `decode`: `start`, then `step` until an end token (not kept), the text stop (plain templates stop at a
newline after the answer, `capture.decoding.default_stop`; the token completing it is kept) or the budget,
then `finish`. It returns an `Answered`: answer text (stripped), the generated token ids and text before any
refusal, abstained, mean log-prob of the chosen tokens under the method's distribution, why it ended, and the
seconds from `start` to the end of `finish` (model loading and the scoring after are not in it; an abstaining
method's own monitor call is).

`answerer.report(context, question, ids)`: the monitor's teacher-forced report of given answer ids, memoised for
the current question; with `baselines=True` a second monitor, recording every head, makes it, so its baselines
hold RAUQ (a method's own check in `finish`, `run.score`, uses the decoding monitor and is timed with the method;
the two monitors' scores and verdicts are the same).

One prefill per question (`share_prefill`, the default): every pass a method opens, and every teacher-forced report,
starts from a copy of a cache that already holds its input but the last token (`answerer.prefix`: computed once
per question and ablation, e.g. the plain prompt for greedy, copy, gated, abstain, the base passes and every
report, the masked prompt for decore and gated, the context-free prompt for cad). The answers are those of one
prefill per pass up to float rounding (tests compare them). Each answer's `seconds` is then its own decoding time
(prefills computed during it taken out) plus the measured time of every prefix it used (`prefill_seconds`), so
a method is charged what it would cost alone.

Left out on purpose: batches, sampling, streaming.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..capture.controller import AttentionController
from ..capture.decoding import default_stop, new_cache, text_stop
from ..heads.scores import HeadScores
from ..probes.templates import resolve_template
from .base import AnswerMethod, Choice
from .passes import Pass
from .support import PromptTexts


@dataclass
class Answered:
    answer: str
    generated_ids: list[int]
    generated: str  # the generated text before any refusal
    abstained: bool
    mean_logprob: float | None
    reason: str  # "eos", "stop" or "length"
    seconds: float  # own decoding + `prefill_seconds`
    steps: list[Choice]
    prefill_seconds: float = 0.0  # the measured prefills of the prefixes it used (module docstring)


class Decoding:
    """The state of one method answering one question (see the module docstring)."""

    def __init__(self, answerer: "Answerer", context: str, question: str, max_new_tokens: int):
        mon = answerer.monitor
        self.answerer, self.model, self.tokenizer = answerer, mon.model, mon.tokenizer
        self.context, self.question = context, question
        self.prompt = mon.prompt(context, question, max_new_tokens)
        self.heads = list(mon.primary.heads)  # the retrieval heads: (layer, query head), score above the threshold
        self.weights = dict(zip(mon.primary.heads, mon.primary.weights))  # their retrieval scores
        self.scores: HeadScores = mon.scores
        self.threshold = mon.threshold
        self.num_layers, self.num_heads = mon.num_layers, mon.num_heads
        self.eos = list(mon.eos)
        self.passes: dict[str, Pass] = {}
        self.tokens: list[int] = []
        self.charged: dict[tuple, float] = {}  # prefix key -> its prefill seconds, charged to this answer
        self._texts: PromptTexts | None = None

    def charge(self, key: tuple, seconds: float) -> None:
        self.charged[key] = seconds

    @property
    def texts(self) -> PromptTexts:
        if self._texts is None:
            self._texts = PromptTexts(self.tokenizer, self.prompt)
        return self._texts

    def open_pass(self, name: str, input_ids: list[int], *, ablate: dict[int, list[int]] | None = None,
                  recorders: list | tuple = ()) -> Pass:
        prefix = self.answerer.prefix(input_ids, ablate, charge=self.charge)
        p = Pass(self.model, input_ids, ablate=ablate, recorders=recorders, prefix=prefix)
        for t in self.tokens:  # opened late: catches up on the answer so far
            p.feed(t)
        self.passes[name] = p
        return p

    def no_context_ids(self) -> list[int]:
        """The prompt with the context's tokens cut out (template and question kept): CAD's second input."""
        c0, c1 = self.prompt.context_slots
        return list(self.prompt.input_ids[:c0]) + list(self.prompt.input_ids[c1:])

    def score(self, ids: list[int]):
        """The monitor's report of answer ids (memoised per question)."""
        return self.answerer.report(self.context, self.question, ids, baselines=False, charge=self.charge)


def decode(method: AnswerMethod, run: Decoding, max_new_tokens: int, stop=None, keep_scores: bool = False) -> Answered:
    """The shared loop (module docstring)."""
    t0, spent0 = time.perf_counter(), run.answerer.spent
    eos = set(run.eos)
    method.start(run)
    steps: list[Choice] = []
    reason = "length"
    for _ in range(max_new_tokens):
        c = method.step(run)
        if not keep_scores:
            c.scores = None
        if c.token in eos:
            reason = "eos"
            break
        steps.append(c)
        run.tokens.append(int(c.token))
        for p in run.passes.values():
            p.feed(c.token)
        if stop is not None and stop(run.tokenizer.decode(run.tokens, skip_special_tokens=True)):
            reason = "stop"
            break
    text = run.tokenizer.decode(run.tokens, skip_special_tokens=True).strip()
    answer, abstained = method.finish(run, text)
    prefill = sum(run.charged.values())
    seconds = time.perf_counter() - t0 - (run.answerer.spent - spent0) + prefill  # prefills charged, not timed
    mean_lp = sum(c.logprob for c in steps) / len(steps) if steps else None
    return Answered(answer, list(run.tokens), text, bool(abstained), mean_lp, reason, seconds, steps, prefill)


class Answerer:
    """See the module docstring."""

    def __init__(self, model, tokenizer, scores: HeadScores | str | Path, *, threshold: float = 0.1,
                 template: str = "default", chat: bool | None = None, baselines: bool = False,
                 share_prefill: bool = True):
        from ..monitor import Monitor

        self.monitor = Monitor(model, tokenizer, scores, threshold=threshold, template=template, chat=chat)
        # the report's monitor: with `baselines`, every head is recorded in its teacher-forced pass, for RAUQ
        self.reporter = self.monitor if not baselines else Monitor(
            model, tokenizer, self.monitor.scores, threshold=threshold, template=template, chat=chat, baselines=True)
        self.stop = text_stop(default_stop(resolve_template(template, tokenizer, chat)))
        self._memo_key: tuple[str, str] | None = None
        self._memo: dict[tuple[int, ...], object] = {}
        self.share_prefill = share_prefill
        self._prefixes: dict[tuple, tuple[object, float]] = {}  # (ids, ablate) -> (cache, seconds), one question's
        self.spent = 0.0  # seconds spent computing prefixes, all told

    def _question(self, context: str, question: str) -> None:
        """Forget the memoised reports and prefixes of the previous question."""
        if self._memo_key != (context, question):
            self._memo_key, self._memo, self._prefixes = (context, question), {}, {}

    def prefix(self, input_ids: list[int], ablate: dict[int, list[int]] | None = None, *, charge=None):
        """(a fresh copy of a cache holding `input_ids[:-1]`, its length), prefilled once per question and
        `ablate`; None when sharing is off or there is nothing before the last token. `charge(key, seconds)` is told
        the prefill's measured time."""
        if not self.share_prefill or len(input_ids) < 2:
            return None
        heads = tuple(sorted((int(l), tuple(sorted(int(h) for h in hs))) for l, hs in (ablate or {}).items() if hs))
        key = (tuple(int(t) for t in input_ids[:-1]), heads)
        hit = self._prefixes.get(key)
        if hit is None:
            t0 = time.perf_counter()
            model = self.monitor.model
            cache = new_cache(model)
            ids = torch.tensor([list(key[0])], device=model.get_input_embeddings().weight.device)  # [1, m]
            with AttentionController(ablate=dict(ablate or {})).activate(model), torch.no_grad():
                model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
            hit = (cache, time.perf_counter() - t0)
            self.spent += hit[1]
            self._prefixes[key] = hit
        if charge is not None:
            charge(key, hit[1])
        return copy.deepcopy(hit[0]), len(key[0])

    def decoding(self, context: str, question: str, max_new_tokens: int) -> Decoding:
        self._question(context, question)
        return Decoding(self, context, question, max_new_tokens)

    def answer(self, method: AnswerMethod, context: str, question: str, max_new_tokens: int = 32, *,
               keep_scores: bool = False) -> Answered:
        run = self.decoding(context, question, max_new_tokens)
        return decode(method, run, max_new_tokens, self.stop, keep_scores=keep_scores)

    def report(self, context: str, question: str, ids: list[int], *, baselines: bool = True, charge=None):
        """The report of answer `ids`; `baselines=False`: the decoding monitor's (a method's own check, in its
        time), else the reporter's (RAUQ too when the answerer records every head). It starts from the prompt's
        shared prefix (`prefix`; `charge` as there)."""
        self._question(context, question)
        mon = self.reporter if baselines else self.monitor
        key = (tuple(int(t) for t in ids), mon is self.reporter)
        if key not in self._memo:
            self._memo[key] = mon.score(context, question, list(key[0]),
                                        prefix=lambda p: self.prefix(p, None, charge=charge))
        return self._memo[key]
