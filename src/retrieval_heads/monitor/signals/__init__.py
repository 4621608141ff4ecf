"""The monitor's signals, each defined once: one module per signal, registered with `register_signal`.

Built in: the monitor's score and its variants per head set (`combined` — the monitor is `retrieval:combined` —,
`copy`, `mass`), the logit baselines (`mean_logprob`, `min_logprob`, `max_entropy`, `mean_entropy`, `length`),
RAUQ (`rauq`) and the supervised Lookback Lens (`lookback`, fitted by the benchmark; scikit-learn is imported
only when it is fitted). `base.py` says what a signal declares; a new signal is a new module here, nothing else.

Left out on purpose: the token rules the signals share (`rules.py`) and the benchmark's metrics (`bench/`).
"""

from .base import (MONITOR, MONITOR_SIGNAL, PRIMARY_SET, AnswerTrace, HeadSetTrace, Signal, all_signals, get_signal,
                   head_set_scores, is_supervised, register_signal, signal_of, stats)

__all__ = ["MONITOR", "MONITOR_SIGNAL", "PRIMARY_SET", "AnswerTrace", "HeadSetTrace", "Signal", "all_signals",
           "get_signal", "head_set_scores", "is_supervised", "register_signal", "signal_of", "stats"]
