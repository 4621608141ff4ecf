"""KV caches that keep less than every key and value: policies (which positions each KV head keeps), the cache
layer that stores them, and the factory that builds a cache for a model.

Left out on purpose: capture and ablation (`capture/`), which need the full cache.
"""
