"""A retrieval-head hallucination monitor: per answer token, did the retrieval heads copy it from the context?

`Monitor` (monitor.py) generates or teacher-forces an answer with the runtime's recorders on the retrieval heads
and reports per-token records, unsupported spans, one answer score and a verdict (score.py). The benchmark
(items.py, bench.py, evaluate.py) labels the model's own answers and compares the monitor with logit baselines,
RAUQ (baselines.py), other head sets and the supervised Lookback Lens (lookback.py); html.py renders a report.

Left out on purpose: anything imported by the rest of the package (only the CLI imports this subpackage).
"""

from .monitor import Monitor, Stream
from .score import AnswerReport, TokenRecord

__all__ = ["Monitor", "Stream", "AnswerReport", "TokenRecord"]
