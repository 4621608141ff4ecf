"""Figures, and the offline HTML/Markdown report (`report/`).

Left out on purpose: interactive plots and JavaScript.
"""
