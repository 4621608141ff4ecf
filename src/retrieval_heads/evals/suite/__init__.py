"""The long-context suite: RULER's task families generated at exact token lengths, RULER's own files as input,
and a scored run (`run.run_suite`), optionally under a KV policy or a head mask.

- `registry.py`: task names -> tasks (one module per family in `tasks/`);
- `common.py`: word lists, random keys/values, haystack pieces; `qadata.py`: HaluEval QA for `qa_2`;
- `prompt.py`: the chat-templated prompt and its tokens; `fit.py`: a sample at a target length;
- `metrics.py`: RULER's string-match metrics; `ruler.py`: RULER-format JSONL in and out;
- `run.py`: the run (predictions.jsonl, summary.json, heatmap.png); `summary.py`: the summary and its table.

Left out on purpose: `qa_1` (SQuAD) and RULER's extra tasks; the KV policies themselves (`kvcache/`).
"""
