"""What our methods read from the retrieval heads: whether the chosen token is supported by what they copy, how
much attention they put on context tokens that hold a candidate, and the DeCoRe contrast shared by `decore` and
`gated`.

- Token text: a token's decoded text, stripped and case-folded; a context token matches an emitted one when
  they are equal, when the emitted text is a prefix of 2+ characters of the context token's (` Athens` in the
  context matches an emitted `Ath`; `Four` matches `four`), or when a context token of 3+ characters that is no
  function word begins the emitted one (`textmatch.token_match`); a short context token (` to`) never matches a
  longer emitted one (`Tokyo`).
- A token needs support only when its text holds a letter or digit and is no function word (the monitor's
  `STOPWORDS`), and it is no end-of-answer or special token (`<|im_end|>` holds letters, but ending the answer
  copies nothing); a token that needs none is supported.
- Supported: some retrieval head's top-1 key (`Top1`) is a context or question slot whose text matches the
  token's (an echo of the question is no invention).
- Candidate mass: the score-weighted sum over retrieval heads of their attention on the context slots whose text
  matches the candidate's (`LastRowAttention` keeps that row).
- `contrast(base, masked, alpha, cap)`: DeCoRe's entropy-scaled contrast in log-probability space,
  `lp_base + alpha * H * (lp_base - lp_masked)`, H the base model's next-token entropy (nats), alpha * H capped
  at `cap` when cap > 0 (the paper's `alpha_cap`; 0 = no cap).

Left out on purpose: matching across more than one emitted token (an emitted token is compared with one
attended token) and any learned weighting.
"""

from __future__ import annotations

import numpy as np
import torch

from ..capture.recorders import Recorder, Rows
from ..monitor.textmatch import STOPWORDS, has_word_char, norm, token_match


def needs_support(text: str) -> bool:
    t = norm(text)
    return has_word_char(t) and t not in STOPWORDS


class PromptTexts:
    """Per prompt slot: its token's normalised text, and whether it lies in the context or the question."""

    def __init__(self, tokenizer, prompt):
        self.tokenizer = tokenizer
        self.text = [norm(tokenizer.decode([t])) for t in prompt.input_ids]
        self.kind = list(prompt.source_kind)  # "context", "question" or ""
        self.special = set(getattr(tokenizer, "all_special_ids", None) or [])  # never in need of support
        self._cache: dict[int, str] = {}

    def of(self, token: int) -> str:
        if token not in self._cache:
            self._cache[token] = norm(self.tokenizer.decode([int(token)]))
        return self._cache[token]

    def slots_matching(self, token: int, kinds: tuple[str, ...] = ("context",)) -> np.ndarray:
        """Prompt slots of the given kinds whose text matches `token`'s."""
        t = self.of(token)
        return np.array([i for i, (s, k) in enumerate(zip(self.text, self.kind)) if k in kinds and token_match(s, t)],
                        dtype=np.int64)


class LastRowAttention(Recorder):
    """Each recorded head's attention over the keys in the last row of the latest call: `latest[layer]` =
    (probs [h, k] on the device, cache slot of key 0). Keeps only the latest call (memory stays flat)."""

    def __init__(self, heads: dict[int, list[int]] | None = None):
        super().__init__(heads)
        self.latest: dict[int, tuple[torch.Tensor, int]] = {}

    def reset(self) -> None:
        super().reset()
        self.latest = {}

    def record(self, rows: Rows) -> None:
        self.latest[rows.layer] = (rows.probs[0, :, -1], rows.key_offset)  # [B, h, R, k] -> [h, k]
        self.seen[rows.layer] = rows.seen


def heads_by_layer(heads: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for l, h in sorted(heads):
        out.setdefault(int(l), []).append(int(h))
    return out


def supported(run, top1: dict[int, torch.Tensor], token: int) -> bool:
    """Module docstring: does any retrieval head's top-1 slot hold a context/question token matching `token`?"""
    texts = run.texts
    if int(token) in run.eos or int(token) in texts.special:  # ending the answer, or a template token
        return True
    if not needs_support(texts.tokenizer.decode([int(token)])):
        return True
    t = texts.of(token)
    by_layer = heads_by_layer(run.heads)
    for l, hs in by_layer.items():
        slots = top1[l].reshape(-1).tolist()  # [h] in the recorder's head order (sorted)
        for s in slots:
            if 0 <= s < len(texts.text) and texts.kind[s] in ("context", "question") and token_match(texts.text[s], t):
                return True
    return False


def candidate_mass(run, rec: LastRowAttention, token: int) -> float:
    """Module docstring: the score-weighted attention of the retrieval heads on context slots holding `token`."""
    slots = run.texts.slots_matching(token)
    if not len(slots):
        return 0.0
    total = 0.0
    for l, hs in heads_by_layer(run.heads).items():
        probs, offset = rec.latest[l]  # [h, k]
        idx = torch.as_tensor(slots - offset, device=probs.device)
        idx = idx[(idx >= 0) & (idx < probs.shape[-1])]
        if not len(idx):
            continue
        mass = probs[:, idx].sum(-1).cpu().numpy()  # [h]
        total += float(sum(run.weights[(l, h)] * m for h, m in zip(hs, mass)))
    return total


def contrast(base: torch.Tensor, masked: torch.Tensor, alpha: float, cap: float = 0.0) -> torch.Tensor:
    """[V] DeCoRe scores from the base and masked logits (module docstring)."""
    lb = torch.log_softmax(base.float(), dim=-1)
    lm = torch.log_softmax(masked.float(), dim=-1)
    entropy = float(-(lb.exp() * lb).sum())
    a = alpha * entropy
    if cap > 0:
        a = min(a, cap)
    return lb + a * (lb - lm)
