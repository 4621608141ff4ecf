"""Heads: retrieval scores per head (the paper's format in and out) and mask specs naming heads to ablate.

Left out on purpose: computing scores (that is `scoring/` and `experiments/detect.py`).
"""
