"""Closed-book questions answered from the model's weights: the built-in `closedbook-facts` (62 short facts,
`data/closedbook_facts.jsonl`) and `qa` (any JSONL of `{"question", "answers"}` given with `--data`).

Correct when any alias appears, case- and punctuation-insensitive on word boundaries, in the first line.

Left out on purpose: open-domain retrieval and long answers.
"""

from __future__ import annotations

from .registry import Item, TaskSpec, register_task

CLOSEDBOOK_EXEMPLARS = (
    Item("ex1", "What is the capital of Australia?", ("Canberra",)),
    Item("ex2", "What colour is coal?", ("Black",)),
    Item("ex3", "How many wheels does a bicycle have?", ("Two",)),
)

register_task(TaskSpec(
    name="closedbook-facts", description="short factual questions answered from the model's weights",
    answer="text", modes=("closedbook",), source="file", fmt="qa", builtin="closedbook_facts.jsonl",
    exemplars=CLOSEDBOOK_EXEMPLARS, shots=3))
register_task(TaskSpec(
    name="qa", description="any JSONL of {question, answers: [aliases]} given with --data, closed-book prompt",
    answer="text", modes=("closedbook",), source="file", fmt="qa", exemplars=CLOSEDBOOK_EXEMPLARS, shots=3))
