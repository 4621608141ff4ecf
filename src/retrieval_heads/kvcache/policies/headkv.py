"""The `headkv` policy (Fu et al. 2024, HeadKV): at a budget b, the prompt's head-positions (floor(b * n) per KV
head, summed over all KV heads of full-attention layers) are shared out per KV head: each keeps at least the
observation window, and the rest goes in proportion to its retrieval score (the best score of its query group,
from scores.json), capped at the prompt; inside each head, SnapKV's pick (`budget.weighted_snap`, `select.py`).

kvpress has no HeadKV press (its head-wise allocation, `AdaKVPress`, shares budgets by attention, not by retrieval
scores).

Left out on purpose: HeadKV's retrieval-reasoning scores (ours are the retrieval scores) and its mixing
hyperparameter (the floor is the observation window, the rest is proportional).
"""

from __future__ import annotations

from ..dims import full_attention_layers
from ..registry import register_policy
from .retrieval import RetrievalPolicy
from .snapkv import SnapKVPolicy


@register_policy("headkv")
class HeadKVPolicy(RetrievalPolicy):
    """Per-KV-head budgets from retrieval scores, SnapKV's pick inside each head (module docstring)."""

    help = "at --kv-budget, each KV head's share of the prompt follows its retrieval score, SnapKV's pick inside it " \
           "(HeadKV)"
    order = 41
    uses_budget = "required"
    params = SnapKVPolicy.params

    def allot(self, model, n: int):
        from ..budget import weighted_snap
        from ..select import SNAP_WINDOW

        return weighted_snap(n, self.budget, full_attention_layers(model), self.kv_head_scores(model), SNAP_WINDOW)
