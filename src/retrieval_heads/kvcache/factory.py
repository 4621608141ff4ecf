"""What a run with a KV policy needs: the cache factory `decoding.generate_batch` calls per batch, and the
`summary.json` keys (`kv_policy`, `kv_bytes`, `kv_bytes_full`, ...).

`kv_factory(config, model)` reads a run config's kv fields (NIAH, kv-sweep) and checks everything before any work:
the policy, its scores, the model's attention, the sink/recent window and the prefill mode.

Left out on purpose: the policies (`kvpolicy.py`), the cache and its byte formulas (`kvcache.py`), and running
anything (the experiments do).
"""

from __future__ import annotations

import numpy as np

from ..errors import RHeadsError
from .cache import RetrievalHeadCache, build_cache, cache_bytes, check_kv_model, check_window, full_cache_bytes
from .layer import PREFILL_MODES
from .policy import KVPolicy, make_policy


class CacheFactory:
    """`decoding.generate_batch`'s `cache` argument: (model, batch size) -> a fresh cache of the policy; keeps the
    last one it made, so the caller can read what it held (`last.peak_bytes`)."""

    def __init__(self, policy: KVPolicy, sink: int, recent: int, prefill: str = "full"):
        if prefill not in PREFILL_MODES:
            raise RHeadsError(f"unknown --kv-prefill '{prefill}': use one of {', '.join(PREFILL_MODES)}")
        self.policy, self.sink, self.recent, self.prefill = policy, int(sink), int(recent), prefill
        self.last = None
        self._full: np.ndarray | None = None

    def check(self, model) -> None:
        """Fail before any work: the model's attention, the scores' shape, the policy's draw."""
        if self.policy.name != "full":
            check_kv_model(model)
        self.policy.full_kv_heads(model)

    def __call__(self, model, batch_size: int):
        if self.policy.name == "full":
            self.last = build_cache(self.policy, model)
        else:
            if self._full is None:  # the map depends only on the model: compute once
                check_kv_model(model)
                self._full = self.policy.full_kv_heads(model)
            self.last = RetrievalHeadCache(model.config, self._full, self.sink, self.recent, prefill=self.prefill)
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


def kv_factory(config, model, masked: bool = False) -> CacheFactory:
    """The cache factory of a run config with fields kv, scores, kv_sink, kv_recent, kv_threshold, kv_top, kv_seed,
    kv_prefill, prefill_chunk (NIAH, kv-sweep), checked against the model before any work. `masked`: heads are
    ablated in this run."""
    if masked and config.kv != "full":
        raise RHeadsError(f"--kv {config.kv} with a head mask: ablation needs the full cache; use one of the two")
    if config.kv != "full" and config.prefill_chunk and config.kv_prefill == "full":
        raise RHeadsError("--prefill-chunk with --kv-prefill full: a chunk cannot attend to the tokens the cache "
                          "already dropped; use --kv-prefill window with chunks, or no chunks")
    policy = make_policy(config.kv, config.scores, threshold=config.kv_threshold, top=config.kv_top,
                         seed=config.kv_seed)
    check_window(config.kv_sink, config.kv_recent)
    factory = CacheFactory(policy, config.kv_sink, config.kv_recent, config.kv_prefill)
    factory.check(model)
    return factory


def kv_summary(records: list[dict], config, model=None) -> dict:
    """summary.json keys: the policy, the most bytes the cache held over the samples (`kv_bytes`), what the full
    cache holds for the same prompts (`kv_bytes_full`), and the mean per-sample share kept (`kv_share`)."""
    held, full = [], []
    for r in records:
        if "kv_bytes" in r:
            held.append(r["kv_bytes"])
            full.append(r["kv_bytes_full"])
        elif model is not None and config.kv == "full":  # a sample decoded before the cache was measured
            b = full_cache_bytes(model.config, r["prompt_length"] + r["new_tokens"] - 1,
                                 dtype_bytes=next(model.parameters()).element_size())
            held.append(b)
            full.append(b)
    policy = {"kv_policy": config.kv}
    if config.kv != "full":
        policy.update(kv_sink=config.kv_sink, kv_recent=config.kv_recent, kv_prefill=config.kv_prefill,
                      kv_threshold=config.kv_threshold,
                      kv_top=config.kv_top, **({"kv_seed": config.kv_seed} if config.kv == "random" else {}))
        if model is not None:
            policy.update({k: v for k, v in make_policy(config.kv, config.scores, threshold=config.kv_threshold,
                                                        top=config.kv_top, seed=config.kv_seed).describe(model).items()
                           if k in ("full_kv_heads", "kv_heads")})
    return {**policy, "kv_bytes": max(held) if held else None, "kv_bytes_full": max(full) if full else None,
            "kv_share": round(float(np.mean([h / f for h, f in zip(held, full)])), 4) if held else None}
