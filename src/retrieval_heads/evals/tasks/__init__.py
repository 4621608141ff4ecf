"""Tasks for `rheads eval` and the CoT experiment: a registry with one module per family.

Importing this package registers the built-in tasks (`gsm8k`, `closedbook-facts`, `qa`, `vartrack`,
`wordproblems`).

Left out on purpose: running models (`experiments/evaluate.py`).
"""

from . import closedbook, generated, gsm8k  # noqa: F401  (they register their tasks)
