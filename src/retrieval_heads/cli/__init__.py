"""The `rheads` command line: `main.py` builds the parser from one module per command group.

Left out on purpose: library code; every handler calls into the package.
"""
