"""What a run with a KV policy needs: the cache factory `decoding.generate_batch` calls per batch, and the
`summary.json` keys (`kv_policy`, `kv_bytes`, `kv_bytes_full`, `kv_share`, ...).

`kv_factory(kv, model, scores, masked)` validates a run's `KVConfig` (`KVConfig.validate`, the one check) and
checks it against the model before any work: the policy, its scores (read once, by the policy the factory
keeps), the model's attention, the random draw. The factory computes the policy's KV-head map once per run.

Left out on purpose: the policies (`policy.py`, `policies/`), the cache and its byte formulas (`cache.py`), and
running anything (the experiments do).
"""

from __future__ import annotations

import numpy as np

from ..errors import ParamError
from .cache import cache_bytes, full_cache_bytes
from .config import PREFILL_MODES, KVConfig


class CacheFactory:
    """`decoding.generate_batch`'s `cache` argument: (model, batch size) -> a fresh cache of the policy; keeps the
    last one it made, so the caller can read what it held (`last.peak_bytes`)."""

    def __init__(self, policy, sink: int, recent: int, prefill: str = "full"):
        if prefill not in PREFILL_MODES:
            raise ParamError("kv.prefill", prefill, f"use one of {', '.join(PREFILL_MODES)}")
        self.policy, self.sink, self.recent, self.prefill = policy, int(sink), int(recent), prefill
        self.last = None
        self.full_heads: np.ndarray | None = None  # [L, KV] the policy's map, computed once (it depends on the model)

    def check(self, model) -> None:
        """Fail before any work: the model's attention, the scores' shape, the policy's draw."""
        self.policy.check_model(model)
        self.full_heads = self.policy.full_kv_heads(model)

    def __call__(self, model, batch_size: int):
        if self.full_heads is None:
            self.check(model)
        self.last = self.policy.build_cache(model, self.sink, self.recent, self.prefill, full_heads=self.full_heads)
        return self.last

    def held_bytes(self) -> int:
        """The most bytes the last cache held."""
        if self.last is None:
            return 0
        return int(getattr(self.last, "peak_bytes", None) or cache_bytes(self.last))

    def usage(self, model, batch_size: int) -> dict:
        """Per sample of the last call: `kv_bytes` (the most the cache held) and `kv_bytes_full` (what the full
        cache holds for the same slots), each the batch's figure / batch size (rows share a padded width)."""
        if self.last is None:
            return {}
        T = self.last.get_seq_length()  # slots fed to the model: prompt (padded width) + new tokens - 1
        elem = next(model.parameters()).element_size()
        full = full_cache_bytes(model.config, T, batch=batch_size, dtype_bytes=elem)
        return {"kv_bytes": self.held_bytes() // batch_size, "kv_bytes_full": full // batch_size}


def kv_factory(kv: KVConfig, model, scores=None, masked: bool = False) -> CacheFactory:
    """The cache factory of a run's KV settings (`scores`: the run's retrieval scores; `masked`: heads are
    ablated in this run), validated and checked against the model before any work."""
    kv.validate(scores, masked=masked)
    factory = CacheFactory(kv.build_policy(scores), kv.sink, kv.recent, kv.prefill)
    factory.check(model)
    return factory


def kv_summary(records: list[dict], kv: KVConfig, model=None, factory: CacheFactory | None = None) -> dict:
    """summary.json keys: the policy and, for a compressing one, its window and selection (`kv_sink`,
    `kv_recent`, `kv_prefill`, `kv_threshold`, `kv_top`, `kv_budget` when set, the policy's params as `kv_<name>`, and with the run's
    `factory` and model `full_kv_heads` / `kv_heads`); the most bytes the cache held over the samples
    (`kv_bytes`), what the full cache holds for the same prompts (`kv_bytes_full`), and the mean per-sample share
    kept (`kv_share`)."""
    compresses = kv.policy_class().compresses
    held, full = [], []
    for r in records:
        if "kv_bytes" in r:
            held.append(r["kv_bytes"])
            full.append(r["kv_bytes_full"])
        elif model is not None and not compresses:  # a sample decoded before the cache was measured
            b = full_cache_bytes(model.config, r["prompt_length"] + r["new_tokens"] - 1,
                                 dtype_bytes=next(model.parameters()).element_size())
            held.append(b)
            full.append(b)
    out: dict = {"kv_policy": kv.policy}
    if compresses:
        policy = factory.policy if factory is not None else kv.build_policy()
        out.update(kv_sink=kv.sink, kv_recent=kv.recent, kv_prefill=kv.prefill, kv_threshold=kv.threshold,
                   kv_top=kv.top, **({"kv_budget": kv.budget} if kv.budget is not None else {}))
        out.update({f"kv_{k}": v for k, v in policy.params().items()})
        if model is not None and factory is not None:
            d = policy.describe(model, full_heads=factory.full_heads)
            out.update(full_kv_heads=d["full_kv_heads"], kv_heads=d["kv_heads"])
    return {**out, "kv_bytes": max(held) if held else None, "kv_bytes_full": max(full) if full else None,
            "kv_share": round(float(np.mean([h / f for h, f in zip(held, full)])), 4) if held else None}
