"""The retrieval score of Wu et al. (2024), per sample, from captured top-1 positions.

A head copies at a decoding step when its top-1 attention position lies in the answer span and the token
there equals the token generated at that step. A sample's score for a head is copies / span length; only
samples whose response has ROUGE-1 recall above 0.5 against the answer count. Averaging over samples and
thresholding live in `heads.scores.HeadScores`.

Left out on purpose: top-k (k > 1) variants and any de-duplication of repeated copies: the paper counts
every copying step.
"""

from __future__ import annotations

import torch


def copy_counts(top1: torch.Tensor, sequence: torch.Tensor, generated: torch.Tensor, span: tuple[int, int]) -> torch.Tensor:
    """[L, H] number of steps at which each head copied from the span.

    top1: [T, L, H] cache positions of each head's top-1 at the step that produced generated[t].
    sequence: [N] the prompt followed by the generated tokens (positions index into it).
    generated: [T] the generated tokens.
    """
    start, end = span
    in_span = (top1 >= start) & (top1 < end)  # [T, L, H]
    attended = sequence[top1.long().clamp(0, sequence.numel() - 1)]  # [T, L, H] token at each top-1 position
    same = attended == generated[:, None, None]  # [T, L, H]
    return (in_span & same).sum(0)  # [L, H]
