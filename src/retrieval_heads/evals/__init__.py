"""Evaluations of a loaded model: NIAH (optionally with heads masked or a KV policy), and the task registry
(`tasks/`) with task evaluation (`taskeval.py`).

Left out on purpose: sweeps over many runs (`studies/`).
"""
