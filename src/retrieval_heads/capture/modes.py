"""The built-in ablation modes' names and one-line docs, without importing torch: `ablation.py` registers its
functions under them, and the `rheads` flags take their choices and help from here (so `--help` stays light).

Left out on purpose: the functions themselves (`ablation.py`), and modes registered at run time (the CLI
offers the built-in ones).
"""

from __future__ import annotations

BUILTIN_ABLATION_DOCS: dict[str, str] = {
    "zero": "the head's output is zeroed before the output projection",
    "uniform": "the head attends uniformly over the positions it may see (its causal/sliding mask): output = mean "
               "of its V",
    "mean": "the head's output is replaced by its mean over a reference run (see `collect_means`)",
}


def ablation_help() -> str:
    """The --ablation help: each built-in mode with its doc."""
    return "; ".join(f"{name}: {doc}" for name, doc in BUILTIN_ABLATION_DOCS.items())
