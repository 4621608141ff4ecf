"""KV caches that keep less than every key and value, and the policies that say what each KV head keeps.

Parts (one module each):
- `config.py`: `KVConfig`, a run's typed KV settings, and their one validation (`KVConfig.validate`);
- `policy.py`: `KVPolicy`, the base class (which KV heads keep every position; the others sink + recent);
- `policies/`: the built-in policies, one file each (full, retrieval, random, streaming);
- `registry.py`: `register_policy(name)` (a class decorator), `get_policy_class(name)`, `policy_names()`;
- `cache.py`: `RetrievalHeadCache` (a transformers `Cache`), `build_cache`, byte formulas, `prefill_chunking`;
- `layer.py` (the cache layer), `storage.py` (tensors, bytes), `eviction.py` (sink + recent), `split.py` (the
  split layer's attention);
- `factory.py`: the per-run cache factory and the summary keys.

This package's face is importable without torch or transformers (the CLI builds its choices from the registry);
the cache classes load on first use (`retrieval_heads.kvcache.RetrievalHeadCache`).

Left out on purpose: capture and ablation (`capture/`), which need the full cache.
"""

from .config import KVConfig, make_policy
from .policy import KVPolicy
from .registry import get_policy_class, policy_names, register_policy, unregister_policy

__all__ = ["CacheFactory", "KVConfig", "KVPolicy", "RetrievalHeadCache", "build_cache", "cache_bytes",
           "expected_bytes", "full_cache_bytes", "get_policy_class", "kv_factory", "make_policy", "policy_names",
           "prefill_chunking", "register_policy", "unregister_policy"]

_LAZY = {"RetrievalHeadCache": "cache", "build_cache": "cache", "cache_bytes": "cache", "expected_bytes": "cache",
         "full_cache_bytes": "cache", "prefill_chunking": "cache", "CacheFactory": "factory", "kv_factory": "factory"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)
