"""`decore`: DeCoRe (Gema et al. 2024, arXiv 2410.18860), decoding by contrasting retrieval heads: the base model
against the same model with its retrieval heads masked (zero ablation through `AttentionController(ablate=...)`),
the contrast scaled by the base model's next-token entropy H, in log-probability space:
`lp_base + alpha * H * (lp_base - lp_masked)` (`support.contrast`), argmax. Two forward passes per token.

Parameters (the paper's; on the tune split, `docs/runs/answer-tune-smollm2`, top:10 scored 0.400 against
0.367 for top:20, so the defaults stayed):
- `mask` (str, default `top:10`): the masked heads, a `heads/masks` spec over the run's scores.json (the paper
  masks its top-N retrieval heads, N varied per model and task; 10 is one of its settings);
- `alpha` (float, default 1.0: the paper's DeCoRe-entropy, whose weight is H itself); alpha = 0 is greedy;
- `cap` (float, default 0: none): the paper's optional `alpha_cap` on alpha * H.
Left out on purpose: DeCoRe's static and other variants, and its own head detection (our scores.json plugs in).
"""

from __future__ import annotations

from ..base import AnswerMethod, Choice
from ..registry import register_method
from .greedy import pick


def masked_heads(run, spec: str) -> dict[int, list[int]]:
    from ...heads.masks import select_heads, to_ablate

    return to_ablate(select_heads(spec, run.num_layers, run.num_heads, scores=run.scores, threshold=run.threshold))


@register_method("decore")
class DeCoRe(AnswerMethod):
    """See the module docstring."""

    help = ("DeCoRe, Gema et al. 2024: base vs retrieval heads masked, scaled by entropy (2 passes per token)")
    baseline = True
    order = 20
    params = {"mask": "top:10", "alpha": 1.0, "cap": 0.0}

    def start(self, run) -> None:
        run.open_pass("base", run.prompt.input_ids)
        run.open_pass("masked", run.prompt.input_ids, ablate=masked_heads(run, self.p["mask"]))

    def step(self, run) -> Choice:
        from ..support import contrast

        base = run.passes["base"].logits()
        if self.p["alpha"] == 0:
            return pick(base)
        return pick(contrast(base, run.passes["masked"].logits(), self.p["alpha"], self.p["cap"]))
