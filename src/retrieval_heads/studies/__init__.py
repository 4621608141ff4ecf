"""Studies built from many runs: the top-K sweeps (ablate, CoT), who copies in CoT, rerunning cut answers, the KV
budget sweep and the intrinsic experiment.

Each writes a resumable run directory (`io/rundir.py`) with a typed config, JSONL records and a summary.
Left out on purpose: single runs (`detection/`, `evals/`), figures (`viz/`) and analyses of finished runs (`analysis/`).
"""
