"""Analyses of finished runs: the paper's properties, comparisons of score sets, and bootstrap intervals.

Left out on purpose: anything that needs the model; everything here reads run files or numbers.
"""
