"""`KVPolicy`, the base class of the KV-cache policies: which positions each KV head of a model keeps.

A policy answers `full_kv_heads(model) -> [L, KV] bool`: True where a KV head keeps every position; every other
KV head of a full-attention layer keeps sink + recent (its first `sink` real tokens and the last `recent` slots;
`eviction.py`). Sliding-window layers are never compressed and never count. A subclass registered with
`registry.register_policy(name)` is usable everywhere by name (`rheads niah --kv`, the kv-sweep); one file in
`kvcache/policies/` per built-in policy.

What a policy says about itself (class attributes, read instead of special-casing names):
- `help`: one line for `rheads niah --kv` and the docs;
- `order`: where it is listed (built-ins 0-30, others 100);
- `compresses`: False for a policy that keeps every position of every head: its cache is transformers' own
  `DynamicCache` (`build_cache`), it needs no registered attention, and prefill chunks need no window;
- `needs_scores`: True when it selects heads from retrieval scores (`check_config` then asks for them);
- `uses_budget`: "never" (the default), "optional" (with `KVConfig.budget` set it holds that share of the full
  cache's bytes, through the budget cache `select.py`) or "required" (it only runs at a budget).
A policy run at a budget sets `budget` and answers `allot(model, n) -> budget.Allotment` (what each KV head keeps of
an n-token prompt); its cache is a `select.SelectCache`. `full_kv_heads` is then the map at the model's whole
context (what the summaries count).
Behaviour to override: `from_config(kv, scores)` (build from a `KVConfig`), `check_config(kv, scores)` (its own
`ParamError`s, called by `KVConfig.validate`), `params()` (what result files record), `build_cache(...)`.

Importable without torch or transformers (the cache is imported inside `build_cache`). Left out on purpose: the
cache mechanics (`cache.py`, `layer.py`), per-query-head budgets (a KV head is shared by its group: keeping a
query head means keeping its KV head) and learned or attention-score-based selection.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParamError
from .dims import full_attention_layers


def model_context(model) -> int:
    """The model's context length (its `max_position_embeddings`; 32768 when it says none)."""
    text = model.config.get_text_config(decoder=True)
    return int(getattr(text, "max_position_embeddings", None) or 32768)


class KVPolicy:
    """The base: a policy names the KV heads that stay full; the cache and the description come from here."""

    name = "base"  # set by register_policy
    help = ""
    order = 100
    compresses = True
    needs_scores = False
    uses_budget = "never"
    budget: float | None = None  # set by a policy run at a budget (`KVConfig.build_policy`) ...
    sink, recent = 4, 256  # ... with the window its WINDOW heads keep

    @classmethod
    def from_config(cls, kv, scores=None) -> "KVPolicy":
        """The policy of a `KVConfig` (`scores`: the run's retrieval scores); the base takes no parameters."""
        return cls()

    @classmethod
    def check_config(cls, kv, scores=None) -> None:
        """This policy's own checks of a `KVConfig` (ParamError); the base asks for scores when it needs them."""
        if cls.needs_scores and scores is None:
            raise ParamError("kv.policy", kv.policy, "this policy needs retrieval scores: the run needs {scores}, "
                             "a scores.json from `rheads detect` on this model")

    def full_kv_heads(self, model) -> np.ndarray:
        """[L, KV] bool: True where the KV head keeps its whole history (at a budget: at the model's context)."""
        if self.budget is not None:
            from .budget import FULL

            n = model_context(model)
            return (self.allot(model, n).modes == FULL) & full_attention_layers(model)[:, None]
        raise NotImplementedError

    def allot(self, model, n: int):
        """A policy run at a budget: what each KV head keeps of an n-token prompt (`budget.Allotment`)."""
        raise NotImplementedError

    def params(self) -> dict:
        """What result files record about the policy's selection (summary keys `kv_<param>`)."""
        return {}

    def describe(self, model=None, full_heads: np.ndarray | None = None) -> dict:
        """The policy, its params and, with a model, how many KV heads of full-attention layers stay full."""
        d = {"policy": self.name, **self.params(), **({"budget": self.budget} if self.budget is not None else {})}
        if model is not None:
            full = self.full_kv_heads(model) if full_heads is None else full_heads
            usable = full_attention_layers(model)
            d["full_kv_heads"] = int(full[usable].sum())
            d["kv_heads"] = int(full[usable].size)
        return d

    def check_model(self, model) -> None:
        """One line when the model cannot run this policy's cache (a compressing cache needs the `rheads`
        attention)."""
        if self.compresses:
            from .cache import check_kv_model

            check_kv_model(model)

    def build_cache(self, model, sink: int = 4, recent: int = 256, prefill: str = "full",
                    full_heads: np.ndarray | None = None):
        """A fresh cache for one `generate` call: a `RetrievalHeadCache` of `full_kv_heads(model)` (or the map
        `full_heads` already computed)."""
        if self.budget is not None:
            from .select import SelectCache

            return SelectCache(model.config, lambda n: self.allot(model, n), sink=sink)
        from .cache import RetrievalHeadCache

        full = self.full_kv_heads(model) if full_heads is None else full_heads
        return RetrievalHeadCache(model.config, full, sink, recent, prefill=prefill)
