"""`gated` (ours): monitor-gated contrast. The base pass records the retrieval heads' top-1 keys; the greedy token
is kept when they support it (`support.supported`). Only at an unsupported step is the DeCoRe contrast applied
(`support.contrast`, the retrieval heads masked in a second pass): that pass runs only at those steps, catching up
on the tokens since its last step in one forward call, so a supported answer costs one pass per token.

Parameters: `mask` (str, default `top:10`), `alpha` (float, default 1.0), `cap` (float, default 0), as in
`decore`; alpha 0.5, 1 and 2 scored the same on the tune split (`docs/runs/answer-tune-smollm2`), so the defaults
stayed.
Left out on purpose: gating on the answer-level score (steps are gated one by one, as they are decoded).
"""

from __future__ import annotations

from ..base import AnswerMethod, Choice
from ..registry import register_method
from .decore import masked_heads
from .greedy import pick


@register_method("gated")
class GatedContrast(AnswerMethod):
    """See the module docstring."""

    help = "the DeCoRe contrast only at steps the retrieval heads do not support (1 pass, 2 when gated)"
    order = 40
    params = {"mask": "top:10", "alpha": 1.0, "cap": 0.0}

    def start(self, run) -> None:
        from ...capture.recorders import Top1
        from ..support import heads_by_layer

        self.top1 = Top1(heads_by_layer(run.heads))
        run.open_pass("base", run.prompt.input_ids, recorders=[self.top1])
        self.ablate = masked_heads(run, self.p["mask"])
        self.gated = 0

    def step(self, run) -> Choice:
        from ..support import contrast, supported

        base = run.passes["base"]
        logits = base.logits()
        greedy = pick(logits)
        if self.p["alpha"] == 0 or supported(run, base.last(self.top1), greedy.token):
            return greedy
        if "masked" not in run.passes:  # opened at the first unsupported step, fed the prompt and answer so far
            run.open_pass("masked", run.prompt.input_ids, ablate=self.ablate)
        self.gated += 1
        return pick(contrast(logits, run.passes["masked"].logits(), self.p["alpha"], self.p["cap"]))
