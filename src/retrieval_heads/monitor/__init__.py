"""A retrieval-head hallucination monitor: per answer token, did the retrieval heads copy it from the context?

  mon = Monitor(model, tokenizer, "docs/runs/smollm2/scores.json")
  report = mon.score(context, question, "under a loose floor tile")  # a given answer: an AnswerReport
  report = mon.run(context, question)                                 # the model's own answer: an AnswerReport
  stream = mon.generate(context, question)                            # the same, streamed: a Stream
  text = "".join(tok.text for tok in stream)                          #   TokenRecords as they are emitted
  report = stream.result()                                            #   then its AnswerReport

An `AnswerReport` holds the answer, its `tokens` (TokenRecords: text, copy, mass, score, unsupported, source),
`hallucination_score` (higher = less supported by the context), `verdict` (supported, partly unsupported,
unsupported, nothing to check), the `unsupported` character spans, the score's variants (`scores`) and the
logit baselines (`baselines`). `monitor.py` runs the model; `recording.py` reads the recorders; `rules.py` holds
the token rules and the verdict; `signals/` defines every signal once (the monitor's score and variants, the
logit baselines, RAUQ, Lookback Lens); `score.py` makes the records; `batch.py` scores JSONL files; `html.py`
renders a report. The labelled benchmark (`bench/`) is the only part that needs scikit-learn.

Left out on purpose: anything imported by the rest of the package (only the CLI imports this subpackage), and
importing scikit-learn (importing this package does not).
"""

from .monitor import Monitor, Stream
from .score import AnswerReport, TokenRecord

__all__ = ["Monitor", "Stream", "AnswerReport", "TokenRecord"]
