"""The Monitor: generate an answer (or take a given one) and report, per token, whether the retrieval heads
copied it from the context, with one answer-level score and a verdict.

  mon = Monitor(model, tokenizer, "runs/qwen/scores.json")
  report = mon.score(context, question, answer)    # a given answer, teacher-forced in one forward pass
  report = mon.run(context, question)              # the model's own answer (greedy), synchronously
  stream = mon.generate(context, question)         # the same, streamed: a Stream, not a report
  for tok in stream:                               #   TokenRecords as they are generated (a thread generates)
      print(tok.text, end="")
  report = stream.result()                         #   then the AnswerReport (waits for the end if need be)
Every call returns (or its Stream's `result()` returns) an `AnswerReport`: `answer`, `tokens` (TokenRecords),
`hallucination_score`, `verdict`, `unsupported` spans, `scores` and `baselines`. Leaving a stream's loop early
stops the generation at the next step; `result()` then holds the tokens emitted so far.

Signals come from the runtime's recorders in the same forward passes that produce the answer: while generating,
a transformers streamer reads recorded row t as token t is emitted, and a logits processor keeps the step's log
probabilities (for the logit baselines); no second pass. `compare` adds uniform-weight head sets (all heads,
random heads) whose signals ride along in each TokenRecord; the log-probabilities and entropies are those of the
step's logits before `min_new_tokens` masks the end tokens (after any processor the model's generation config
adds; greedy decoding of the bundled models adds none); `baselines=True` records every head (copy flags,
source mass, lookback ratio, previous-token attention) for RAUQ and Lookback Lens, and keeps those arrays on
the report (`report.raw`). `copy_match="text"` (the default) also counts a copy when the attended context token
and the emitted one differ in tokenization but match by text (`textmatch.py`: ` Athens` against `Ath` + `ens`);
`"id"` is the paper's test, the same token id. Token rules: `rules.py`; scores: the signal registry
(`signals/`); records: `score.py`.

Left out on purpose: batches of prompts, sampling (greedy only), and stopping a generation on a bad score.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..errors import ParamError
from ..atlas.match import check_model as check_atlas_model
from ..heads.masks import check_dims
from ..heads.scores import HeadScores
from ..models.info import eos_ids, model_dims
from ..capture.attention import check_model
from ..capture.controller import AttentionController
from ..capture.decoding import greedy_kwargs
from .prompt import MonitorPrompt, build_prompt
from .recording import HeadSet, Recording
from .score import AnswerReport, TokenRecord, make_token, report
from .signals import PRIMARY_SET
from .signals.rauq import rauq
from .textmatch import norm, word_so_far


class _LogitStats:
    """A logits processor that keeps the current step's log-probabilities and entropy (scores unchanged)."""

    def __init__(self):
        self.logp: torch.Tensor | None = None
        self.entropy = 0.0

    def __call__(self, input_ids, scores):
        lp = torch.log_softmax(scores[0].float(), dim=-1)  # [V]
        self.logp = lp
        self.entropy = float(-(lp.exp() * lp).sum())
        return scores


class _Streamer:
    """A transformers streamer (put/end): skips the prompt, then hands each emitted token to `on_step`."""

    def __init__(self, on_step: Callable[[int], None]):
        self.on_step, self.started = on_step, False

    def put(self, value):
        if not self.started:
            self.started = True
            return
        self.on_step(int(value.reshape(-1)[0]))

    def end(self):
        pass


class _Cancel:
    """A stopping criterion set by a consumer that stopped reading a stream."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self, input_ids, scores, **kw):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class _Decoder:
    """Incremental answer text: each token's characters, so that they join to the decoded answer."""

    def __init__(self, tokenizer):
        self.tok, self.ids, self.text = tokenizer, [], ""

    def add(self, token: int) -> tuple[str, int]:
        self.ids.append(token)
        new = self.tok.decode(self.ids, skip_special_tokens=True)
        start = len(self.text) if new.startswith(self.text) else len(_common_prefix(self.text, new))
        piece = new[start:]
        self.text = new
        return piece, start


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _budget(max_new_tokens: Any) -> int:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ParamError("max_new_tokens", max_new_tokens, "give the answer's token budget, a whole number >= 1")
    return int(max_new_tokens)


class Monitor:
    """See the module docstring. `scores`: a HeadScores or a path to scores.json of this model."""

    def __init__(self, model, tokenizer, scores: HeadScores | str | Path, *, threshold: float = 0.1,
                 template: str = "default", chat: bool | None = None, max_new_tokens: int = 64,
                 compare: dict[str, list[tuple[int, int]]] | None = None, baselines: bool = False,
                 copy_match: str = "text"):
        check_model(model)
        if copy_match not in ("text", "id"):
            raise ParamError("copy_match", copy_match, "text (a copy matches by text, `textmatch.py`) or id (the "
                             "paper's test: the same token id)")
        self.copy_match = copy_match
        self.model, self.tokenizer = model, tokenizer
        self.num_layers, self.num_heads, self.max_context = model_dims(model)
        check_atlas_model(scores, model)  # an atlas entry of other dimensions refused, of other weights warned
        source = "the score file"
        if not isinstance(scores, HeadScores):
            source = str(scores)
            scores = HeadScores.load(scores)
        check_dims(scores, self.num_layers, self.num_heads, source=source)
        max_new_tokens = _budget(max_new_tokens)
        heads = scores.above(threshold)
        if not heads:
            raise ParamError("threshold", threshold, f"no head of {source} scores above {threshold}: pass a "
                             "scores.json with retrieval heads or lower {threshold}")
        self.scores, self.threshold, self.template, self.chat = scores, threshold, template, chat
        self.max_new_tokens, self.baselines = max_new_tokens, baselines
        self.primary = HeadSet.scored(PRIMARY_SET, heads, scores.mean())
        self.sets = [self.primary] + [HeadSet.uniform(n, hs) for n, hs in (compare or {}).items()]
        self.eos = eos_ids(model, tokenizer)

    # ------------------------------------------------------------------------------ prompts
    def prompt(self, context: str, question: str, max_new_tokens: int = 0) -> MonitorPrompt:
        return build_prompt(self.tokenizer, context, question, self.template, self.chat,
                            max_context=self.max_context or None, max_new_tokens=max_new_tokens)

    def _token(self, rec: Recording, t: int, token: int, decoder: _Decoder, logprob: float,
               entropy: float) -> TokenRecord:
        text, start = decoder.add(token)
        end = start + len(text)
        if self.copy_match == "text":  # copies matched by text too
            sig = rec.step(t, token, norm(text), word_so_far(decoder.text, start, end))
        else:
            sig = rec.step(t, token)
        src = None
        if sig[0].slot is not None:
            hit = rec.prompt.source_of(sig[0].slot)
            if hit is not None:
                src = {"kind": hit[0], "start": hit[1], "end": hit[2], "slot": sig[0].slot}
        others = {s.name: x for s, x in zip(self.sets[1:], sig[1:])}
        return make_token(t, token, text, start, decoder.text, sig[0], src, logprob, entropy, others)

    def _finish(self, rec: Recording, tokens: list[TokenRecord], answer: str, reason: str, keep: bool) -> AnswerReport:
        raw, rauq_out = None, None
        if self.baselines:
            prev = rec.prev_token()  # [R, L*H]
            rauq_out = rauq([t.logprob for t in tokens], prev, self.num_layers, self.num_heads)
            rauq_tok = rauq_out[1]
            if keep:
                steps = rec.raw[: len(tokens)]
                raw = {k: np.stack([s[k] for s in steps]) if steps else np.zeros((0, len(rec.order)))
                       for k in ("copy", "copy_q", "mass", "lr")}
                raw["prev"] = prev
                raw["rauq_tokens"] = np.asarray(rauq_tok)
        out = report(answer, tokens, reason, rec.prompt.n, rauq=rauq_out, context=rec.prompt.context,
                     question=rec.prompt.question)
        out.raw = raw  # type: ignore[attr-defined]
        return out

    # ------------------------------------------------------------------------------ generation
    def _limit(self, max_new_tokens: int | None) -> int:
        return self.max_new_tokens if max_new_tokens is None else _budget(max_new_tokens)

    def run(self, context: str, question: str, *, max_new_tokens: int | None = None,
            min_new_tokens: int | None = None, on_token: Callable[[TokenRecord], None] | None = None,
            keep: bool = False, _cancel: _Cancel | None = None) -> AnswerReport:
        """Greedy-generate an answer with monitoring; `on_token` sees each TokenRecord as it is emitted."""
        from transformers import LogitsProcessorList, StoppingCriteriaList

        limit = self._limit(max_new_tokens)
        prompt = self.prompt(context, question, limit)
        rec = Recording(prompt, self.sets, self.num_layers, self.num_heads, all_heads=self.baselines)
        ctl = AttentionController(recorders=rec.recorders)
        stats, decoder, tokens = _LogitStats(), _Decoder(self.tokenizer), []
        state = {"t": 0, "eos": False}
        eos = set(self.eos)

        def on_step(token: int) -> None:
            t = state["t"]
            state["t"] += 1
            if state["eos"]:
                return
            if token in eos:
                state["eos"] = True
                return
            lp = float(stats.logp[token]) if stats.logp is not None else float("nan")
            tok = self._token(rec, t, token, decoder, lp, stats.entropy)
            tokens.append(tok)
            if on_token is not None:
                on_token(tok)

        device = self.model.get_input_embeddings().weight.device
        ids = torch.tensor([prompt.input_ids], device=device)  # [1, N]
        extra = {"stopping_criteria": StoppingCriteriaList([_cancel])} if _cancel is not None else {}
        procs = [stats]  # the statistics see the logits before min_new_tokens masks the end tokens
        if min_new_tokens and self.eos:
            from transformers import MinNewTokensLengthLogitsProcessor

            procs.append(MinNewTokensLengthLogitsProcessor(prompt.n, min_new_tokens, self.eos, device=device))
        with ctl.activate(self.model), torch.no_grad():
            self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=limit,
                                eos_token_id=self.eos or None, pad_token_id=self.eos[0] if self.eos else 0,
                                streamer=_Streamer(on_step), logits_processor=LogitsProcessorList(procs),
                                **greedy_kwargs(self.model), **extra)
        reason = "eos" if state["eos"] else "length"
        return self._finish(rec, tokens, decoder.text, reason, keep)

    def generate(self, context: str, question: str, **kw) -> "Stream":
        """A `Stream` of the model's answer: iterate it for TokenRecords as they are emitted; its `.result()` is the
        AnswerReport. Bad input (an empty context, a prompt over the model's context) raises here, not in the loop."""
        return Stream(self, context, question, kw)

    # ------------------------------------------------------------------------------ teacher forcing
    def answer_ids(self, answer: str | list[int]) -> list[int]:
        """The token ids `score` teacher-forces for an answer (text, or token ids), end tokens left out."""
        if isinstance(answer, str):
            ids_ans = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        else:
            ids_ans = [int(x) for x in answer]
        eos = set(self.eos)
        return [t for t in ids_ans if t not in eos]

    def check(self, context: str, question: str, answer: str | list[int] | None = None) -> MonitorPrompt:
        """The prompt `run` (answer None: with its token budget) or `score` (the given answer) would use; raises the
        one-line error they would raise (empty context or question, a prompt over the model's context)."""
        n = self.max_new_tokens if answer is None else len(self.answer_ids(answer))
        return self.prompt(context, question, n)

    def score(self, context: str, question: str, answer: str | list[int], *, keep: bool = False,
              prefix: Callable[[list[int]], tuple[Any, int] | None] | None = None) -> AnswerReport:
        """Score a given answer (text, or token ids) in one forward pass over prompt + answer. `prefix(prompt ids)`
        may return (a cache holding the prompt's first m < n tokens, m), prefilled without recording (e.g.
        `answer.loop.Answerer.prefix`): the pass then runs over the rest only, with the same records."""
        ids_ans = self.answer_ids(answer)
        prompt = self.prompt(context, question, len(ids_ans))
        n, T = prompt.n, len(ids_ans)
        rec = Recording(prompt, self.sets, self.num_layers, self.num_heads, all_heads=self.baselines)
        tokens: list[TokenRecord] = []
        decoder = _Decoder(self.tokenizer)
        if T == 0:
            return self._finish(rec, tokens, "", "given", keep)
        got = prefix(list(prompt.input_ids)) if prefix is not None else None
        cache, m = got if got is not None else (None, 0)
        if not 0 <= m < n:
            raise ValueError(f"a prefix of {m} tokens cannot serve a prompt of {n}")
        # T + 1 rows: the last for RAUQ
        ctl = AttentionController(recorders=rec.recorders, rows=(n - 1, n + T), cached=m)
        device = self.model.get_input_embeddings().weight.device
        ids = torch.tensor([prompt.input_ids[m:] + ids_ans], device=device)  # [1, N - m + T]
        kw = {"use_cache": False} if cache is None else {"cache": cache, "use_cache": True}
        with ctl.activate(self.model), torch.no_grad():
            logits = self.model(input_ids=ids, logits_to_keep=T + 1, **kw).logits[0, :T]  # [T, V]
        lp = torch.log_softmax(logits.float(), dim=-1)  # [T, V]
        ent = -(lp.exp() * lp).sum(-1)  # [T]
        for t, token in enumerate(ids_ans):
            tokens.append(self._token(rec, t, token, decoder, float(lp[t, token]), float(ent[t])))
        return self._finish(rec, tokens, decoder.text, "given", keep)


class Stream:
    """What `Monitor.generate` returns. Iterating yields TokenRecords as the model emits them; `result()` waits for
    the generation to end and returns its AnswerReport (with or without iterating first). Leaving the loop early
    stops the generation at the next step. Errors of the generation are raised by the loop and by `result()`."""

    def __init__(self, monitor: Monitor, context: str, question: str, kw: dict[str, Any]):
        self._q: queue.Queue = queue.Queue()
        self._cancel = _Cancel()
        self._report: AnswerReport | None = None
        self._error: BaseException | None = None
        monitor.prompt(context, question, monitor._limit(kw.get("max_new_tokens")))  # fail here, not later

        def work():
            try:
                self._report = monitor.run(context, question, on_token=self._q.put, _cancel=self._cancel, **kw)
            except BaseException as e:  # handed to the reader
                self._error = e
            finally:
                self._q.put(None)

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[TokenRecord]:
        try:
            while True:
                item = self._q.get()
                if item is None:
                    break
                yield item
        finally:
            if self._thread.is_alive():
                self._cancel.event.set()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def result(self) -> AnswerReport:
        self._thread.join()
        self._raise()
        return self._report
