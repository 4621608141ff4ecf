"""The offline report: one self-contained HTML page and its Markdown twin over several runs.

Left out on purpose: JavaScript and interactive plots.
"""
