"""Capture: the registered `rheads` attention function, its controller, ablation modes and decoding.

Left out on purpose: what the captured rows mean (that is `scoring/` and the experiments).
"""
