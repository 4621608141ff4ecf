"""Probes: haystacks, needle sets, prompt templates, NIAH prompts in the model's own tokens, the sample grid.

Left out on purpose: running models (`runtime/`) and scoring answers (`scoring/`).
"""
