"""The monitor's labelled benchmark: items, the run that answers them, and the evaluation against baselines.

The only part of the monitor that needs scikit-learn. Left out on purpose: the monitor itself (`monitor/`).
"""
