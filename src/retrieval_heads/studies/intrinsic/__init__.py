"""The intrinsic experiment: extend a model's context (RoPE), train it a little, and check that the same heads
retrieve before and after (`stages.py` has the whole story).

Left out on purpose: the command line (`cli/intrinsic.py`).
"""
