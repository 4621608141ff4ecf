"""Experiments: detection, NIAH with heads masked, the top-K sweeps, task evaluation, CoT, the intrinsic run.

Each writes a resumable run directory (`io/rundir.py`) with a typed config, JSONL records and a summary.
Left out on purpose: figures (`viz/`) and analyses of finished runs (`analysis/`).
"""
