"""Retrieval-head detection: NIAH probes decoded with top-1 capture, scored by the paper's copy rule.

Left out on purpose: the probes themselves (`probes/`) and the score file format (`heads/`).
"""
