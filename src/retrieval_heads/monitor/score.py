"""From per-token signals to token records, unsupported spans, the answer's scores and its verdict. No labels are
used: every constant was fixed before the benchmark was run.

Per answer token t, for a head set (by default the retrieval heads, each weighted by its retrieval score):
  copy_t   weighted share of the heads whose top-1 key is a context token equal to the emitted token
  copy_q_t the same for question tokens
  mass_t   their weighted mean attention mass on the context tokens
  score_t  the monitor's token score, 1 - (max(copy_t, copy_q_t) + mass_t) / 2 (`signals/combined.py`)
Which tokens count, echo, are unsupported, and the verdict: `rules.py`. Unsupported spans are runs of
unsupported tokens (non-content tokens between two unsupported ones join the run; an echo token ends it), in
character offsets of the answer. The answer's scores (`AnswerReport.scores`: `combined`, the hallucination score,
and its variants `copy` and `mass`) and baselines (`AnswerReport.baselines`: the logit statistics, and RAUQ when
every head was recorded) come from the signal registry (`signals/`), the one definition of each.
While streaming, a token's `content` flag sees only the word so far; the report recomputes it on the whole answer,
and applies the text rules (`rules.absent_words`, `rules.copied_verbatim`) when it is given the context and
question: a token's `absent`, the report's `verbatim`.

Left out on purpose: calibration to probabilities (that would need labels) and semantic paraphrase matching.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .anchors import anchors
from .rules import absent_words, copied_verbatim, is_echo, is_unsupported, verdict, word_flags
from .signals import MONITOR_SIGNAL, PRIMARY_SET, AnswerTrace, HeadSetTrace, head_set_scores, stats
from .signals.combined import token_score


@dataclass
class TokenRecord:
    """One answer token as the monitor reports it (while streaming, or in a scored answer)."""

    index: int
    token_id: int
    text: str  # the token's characters in the answer
    start: int  # [start, end) in the answer text
    end: int
    content: bool
    echo: bool
    copy: float
    copy_q: float
    n_copy: int
    mass: float
    score: float  # token_score: 1 - support
    unsupported: bool
    source: dict | None  # {"kind": "context"|"question", "start", "end", "slot"} of the copied token, or None
    logprob: float
    entropy: float
    sets: dict[str, dict[str, float]] = field(default_factory=dict)  # other head sets: {name: {copy, copy_q, mass}}
    absent: bool = False  # its content word is absent from the context and the question (set by `report`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recount(self, content: bool, absent: bool = False, verbatim: bool = False) -> None:
        self.content, self.absent = content, content and absent
        self.unsupported = is_unsupported(content, self.echo, self.copy, self.absent, verbatim)


def make_token(index: int, token_id: int, text: str, start: int, answer_so_far: str, signals, source: dict | None,
               logprob: float, entropy: float, others: dict[str, Any] | None = None) -> TokenRecord:
    """A TokenRecord from the primary head set's StepSignals and the other sets' ({name: StepSignals})."""
    sets = {k: {"copy": round(v.copy, 5), "copy_q": round(v.copy_q, 5), "mass": round(v.mass, 5)}
            for k, v in (others or {}).items()}
    tok = TokenRecord(index, int(token_id), text, start, start + len(text), False, is_echo(signals.copy, signals.copy_q),
                      signals.copy, signals.copy_q, signals.n_copy, signals.mass,
                      token_score(signals.copy, signals.copy_q, signals.mass),
                      False, source, logprob, entropy, sets)
    tok.recount(word_flags(answer_so_far, [(tok.start, tok.end)])[0])
    return tok


def unsupported_spans(tokens: list[TokenRecord]) -> list[tuple[int, int]]:
    """[start, end) character spans of runs of unsupported tokens in the answer."""
    spans: list[list[int]] = []
    joinable = False  # the last content token was unsupported: only non-content tokens since
    for tok in tokens:
        if tok.unsupported:
            if joinable:
                spans[-1][1] = tok.end
            else:
                spans.append([tok.start, tok.end])
            joinable = True
        elif tok.content:
            joinable = False
    return [(a, b) for a, b in spans]


@dataclass
class AnswerReport:
    """A monitored answer: its text, tokens, the answer-level score, unsupported spans, verdict and baselines."""

    answer: str
    tokens: list[TokenRecord]
    hallucination_score: float | None
    verdict: str
    unsupported: list[tuple[int, int]]
    scores: dict[str, float | None]  # the primary head set's per-head-set signals: combined, copy, mass
    baselines: dict[str, float | None]  # the stored signals' values: logit statistics (and rauq)
    reason: str  # eos, length or given (teacher-forced)
    prompt_tokens: int
    verbatim: bool = False  # a short answer copied verbatim from the context (`rules.copied_verbatim`)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("raw", None)
        d["unsupported"] = [list(s) for s in self.unsupported]
        return d


def trace_of(tokens: list[TokenRecord], rauq: tuple[float | None, list[float]] | None = None,
             context: str | None = None, question: str = "") -> AnswerTrace:
    """What the signals read of a monitored answer: the primary head set's per-token signals, the log-probabilities
    and entropies, RAUQ when every head was recorded (`rauq`: its value and per-token values), and with `context`
    the copy sources and the question's anchors in it (`anchors.py`)."""
    hs = HeadSetTrace([t.copy for t in tokens], [t.copy_q for t in tokens], [t.mass for t in tokens])
    r, r_tok = rauq if rauq is not None else (None, [])
    sources = [t.source["start"] if t.source and t.source.get("kind") == "context" else None for t in tokens]
    return AnswerTrace([t.content for t in tokens], {PRIMARY_SET: hs}, [t.logprob for t in tokens],
                       [t.entropy for t in tokens], r, r_tok, all_heads=rauq is not None, sources=sources,
                       anchors=anchors(context, question) if context else [], context_chars=len(context or ""))


def report(answer: str, tokens: list[TokenRecord], reason: str, prompt_tokens: int, *,
           rauq: tuple[float | None, list[float]] | None = None, context: str | None = None,
           question: str = "") -> AnswerReport:
    """The AnswerReport of a finished answer (content flags recomputed on the whole answer; with `context`, the
    text rules applied)."""
    spans = [(t.start, t.end) for t in tokens]
    absent = absent_words(answer, spans, context, question) if context is not None else [False] * len(tokens)
    verbatim = context is not None and copied_verbatim(answer, context)
    for tok, flag, gone in zip(tokens, word_flags(answer, spans), absent):
        tok.recount(flag, gone, verbatim)
    a = trace_of(tokens, rauq, context, question)
    scores = head_set_scores(a, PRIMARY_SET)
    v = verdict([t.content for t in tokens], [t.echo for t in tokens], [t.unsupported for t in tokens],
                [t.absent for t in tokens], verbatim)
    return AnswerReport(answer, tokens, scores[MONITOR_SIGNAL], v, unsupported_spans(tokens), scores, stats(a),
                        reason, prompt_tokens, verbatim)
