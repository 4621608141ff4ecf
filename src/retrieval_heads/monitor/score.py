"""From per-token signals to token scores, unsupported spans, one answer score and a verdict. No labels are used:
every constant here was fixed before the benchmark was run.

Per answer token t, for a head set (by default the retrieval heads, each weighted by its retrieval score):
  copy_t   weighted share of the heads whose top-1 key is a context token equal to the emitted token
  copy_q_t the same for question tokens
  mass_t   their weighted mean attention mass on the context tokens
  support_t = (max(copy_t, copy_q_t) + mass_t) / 2   (equal weights: without labels neither signal is preferred)
  token_score_t = 1 - support_t          in [0, 1], higher = less supported by what the user gave
Tokens that do not count:
- non-content tokens: a token counts only if the word it belongs to (a run of letters and digits in the answer)
  has a letter or digit and is not a function word (`STOPWORDS`); punctuation and end-of-turn tokens never count;
- echo tokens: more copying weight on the question than on the context (the answer repeats the question, which
  is neither evidence nor invention; their token score, low, says they were copied).
  hallucination_score = mean token_score over counted tokens (over content tokens when none is counted, over
  all tokens when none is content; None for an empty answer)
A counted token is unsupported when no head of the set copied it from the context (copy_t = 0: the paper's
notion, free of the scale of token_score, which differs between models); unsupported spans are runs of them
(non-content tokens between two unsupported ones join the run; an echo token ends it), in character offsets of
the answer.
Verdict: `supported` (no unsupported token), `partly unsupported` (under half of the counted tokens), else
`unsupported`; `nothing to check` when no token counts (an empty answer, or one that only repeats the question). The variants `copy` (1 - mean copy) and `mass` (1 - mean mass) over the same tokens are reported.
While streaming, a token's `content` flag sees only the word so far; the report recomputes it on the whole answer.

Left out on purpose: calibration to probabilities (that would need labels) and semantic paraphrase matching.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

VERDICTS = ("supported", "partly unsupported", "unsupported", "nothing to check")
VARIANTS = ("combined", "copy", "mass")  # answer-level scores per head set; `combined` is the monitor's score
STOPWORDS = frozenset(
    "a an the of to in on at by for from with about as into onto is are was were be been being am it its this that "
    "these those and or but if so than then there their they them he she his her him we our us you your i my me "
    "do does did has have had not no yes which who whom whose what when where why how also very just can could "
    "will would shall should may might must s".split())

_WORD = re.compile(r"[^\W_]+")


def word_flags(answer: str, spans: list[tuple[int, int]]) -> list[bool]:
    """Per token [start, end) of `answer`: does it overlap a content word (see the module docstring)?"""
    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(answer)]
    out = []
    for a, b in spans:
        out.append(any(ws < b and we > a and w not in STOPWORDS for ws, we, w in words) if b > a else False)
    return out


def token_score(copy: float, copy_q: float, mass: float) -> float:
    return 1.0 - 0.5 * (max(copy, copy_q) + mass)


def is_echo(copy: float, copy_q: float) -> bool:
    return copy_q > copy


def is_unsupported(content: bool, echo: bool, copy: float) -> bool:
    return content and not echo and copy <= 0.0


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recount(self, content: bool) -> None:
        self.content = content
        self.unsupported = is_unsupported(content, self.echo, self.copy)


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


def counted(content: list[bool], echo: list[bool]) -> list[int]:
    """Indices of the tokens an answer score averages over (module docstring)."""
    n = len(content)
    return ([i for i in range(n) if content[i] and not echo[i]] or [i for i in range(n) if content[i]]
            or list(range(n)))


def answer_score(copy: list[float], copy_q: list[float], mass: list[float], content: list[bool],
                 variant: str = "combined") -> float | None:
    """The answer-level score of one variant for one head set; None for an answer without tokens."""
    if not copy:
        return None
    keep = counted(content, [is_echo(c, q) for c, q in zip(copy, copy_q)])
    if variant == "combined":
        vals = [token_score(copy[i], copy_q[i], mass[i]) for i in keep]
    elif variant == "copy":
        vals = [1.0 - max(copy[i], copy_q[i]) for i in keep]
    elif variant == "mass":
        vals = [1.0 - mass[i] for i in keep]
    else:
        raise ValueError(f"unknown variant {variant!r}: one of {VARIANTS}")
    return sum(vals) / len(vals)


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


def verdict(tokens: list[TokenRecord]) -> str:
    keep = [t for t in tokens if t.content and not t.echo]
    bad = sum(t.unsupported for t in keep)
    if not keep:
        return VERDICTS[3]
    if bad == 0:
        return VERDICTS[0]
    return VERDICTS[1] if bad < 0.5 * len(keep) else VERDICTS[2]


@dataclass
class AnswerReport:
    """A monitored answer: its text, tokens, the answer-level score, unsupported spans, verdict and baselines."""

    answer: str
    tokens: list[TokenRecord]
    hallucination_score: float | None
    verdict: str
    unsupported: list[tuple[int, int]]
    scores: dict[str, float | None]  # the variants of the primary head set
    baselines: dict[str, float | None]
    reason: str  # eos, length or given (teacher-forced)
    prompt_tokens: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("raw", None)
        d["unsupported"] = [list(s) for s in self.unsupported]
        return d


def report(answer: str, tokens: list[TokenRecord], baselines: dict[str, float | None], reason: str,
           prompt_tokens: int) -> AnswerReport:
    for tok, flag in zip(tokens, word_flags(answer, [(t.start, t.end) for t in tokens])):
        tok.recount(flag)
    copy, copy_q, mass = [t.copy for t in tokens], [t.copy_q for t in tokens], [t.mass for t in tokens]
    content = [t.content for t in tokens]
    scores = {v: answer_score(copy, copy_q, mass, content, v) for v in VARIANTS}
    return AnswerReport(answer, tokens, scores["combined"], verdict(tokens), unsupported_spans(tokens), scores,
                        baselines, reason, prompt_tokens)
