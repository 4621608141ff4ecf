"""One prefill, many caches: a prompt's prefill is run once, and every budget policy's cache (and the full
cache) is derived from it, so a sweep over P policies and budgets prefills each sample once instead of P times.

- `PrefillCapture(config)`: the prefill's cache, a `SelectCache` that keeps, per full-attention layer, what any
  policy's pick needs: the prompt's keys and values [B, KV, n, D], which slots are real [B, n], the last
  `SNAP_WINDOW` queries [B, H, w, D] (SnapKV's observation window) and the attention's scaling. Sliding-window
  layers stay the model's own and are copied. It serves the prompt's one forward (through `generate` with one
  new token, so the first token is generate's own pick) and refuses a second.
- `derive_cache(fresh, capture)`: fills a fresh cache of a policy from the capture, exactly as the policy's own
  prefill would have: a `SelectCache`'s layers run their own selection (`SelectLayer.load`), a `DynamicCache`
  (the `full` policy's) gets the keys and values as they are. The result continues one `generate` call from the
  prompt plus its first token.

The derived caches equal the ones a prefill per policy builds (the prefill's attention is the full cache's own
SDPA either way), so the sweep's answers are the same: `tests/kvcache/test_shared_prefill.py` checks them token
for token against one prefill per policy.

Left out on purpose: caches other than `SelectCache` and `DynamicCache` (the window policies without a budget
evict during prefill, so they cannot share it) and running the sweep (`studies/kvshared.py`).
"""

from __future__ import annotations

import copy

from transformers import DynamicCache

from ..errors import RHeadsError
from .select import SNAP_WINDOW, SelectCache, SelectLayer


class PrefillCapture(SelectCache):
    """The shared prefill's cache (module docstring); `captured[layer] = (query window, keys, values, real,
    scaling)` once the prompt's forward has run."""

    def __init__(self, config, window: int = SNAP_WINDOW):
        super().__init__(config, allot=None, window=window)
        self.captured: dict[int, tuple] = {}


def derive_cache(fresh, capture: PrefillCapture):
    """`fresh` (a new `SelectCache` or `DynamicCache` of the same model), filled from `capture` (module docstring)."""
    if len(capture.captured) != sum(isinstance(layer, SelectLayer) for layer in capture.layers):
        raise RHeadsError("the shared prefill has not run on this capture: run the prompt's forward through it first")
    if isinstance(fresh, SelectCache):
        if fresh.window > capture.window:
            raise RHeadsError(f"this policy's observation window ({fresh.window}) is wider than the shared prefill's "
                              f"({capture.window}): capture with window={fresh.window}")
        if fresh.get_seq_length():
            raise RHeadsError("derive_cache fills a fresh cache: build a new one")
        for l, layer in enumerate(fresh.layers):
            if isinstance(layer, SelectLayer):
                layer.load(*capture.captured[l])
            else:
                fresh.layers[l] = copy.deepcopy(capture.layers[l])
        fresh._continues = True  # generate may continue from the prompt it holds (`cache.OneCallCache`)
        return fresh
    if type(fresh) is DynamicCache:
        if fresh.get_seq_length():
            raise RHeadsError("derive_cache fills a fresh cache: build a new one")
        if len(fresh.layers) != len(capture.layers):
            raise RHeadsError("derive_cache needs a DynamicCache built from the model's config "
                              "(DynamicCache(config=model.config))")
        for l, layer in enumerate(capture.layers):
            if isinstance(layer, SelectLayer):
                _, keys, values, _, _ = capture.captured[l]
                fresh.layers[l].update(keys, values)
            else:
                fresh.layers[l] = copy.deepcopy(layer)
        return fresh
    raise RHeadsError(f"a {type(fresh).__name__} cannot be derived from a shared prefill (only budget policies' "
                      "SelectCache and the full DynamicCache): run this policy with its own prefill")
