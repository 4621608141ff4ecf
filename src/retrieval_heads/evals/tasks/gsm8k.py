"""GSM8K: grade-school math word problems, JSONL `{"question", "answer"}` with the answer ending in `#### N`.

Modes `direct` ("Answer with the number only") and `cot` (step by step, ending "The answer is N."), scored by
exact numeric match. Items come from `--data` (a local JSONL, or a hub id when the `datasets` package and a
network are there), else from the first existing of `LOCAL_GSM8K` (relative to the working directory).

Left out on purpose: the GSM8K data itself (this package ships none).
"""

from __future__ import annotations

from .registry import Item, TaskSpec, register_task

LOCAL_GSM8K = ("shared/data/gsm8k/test.jsonl", "../shared/data/gsm8k/test.jsonl")  # tried relative to the cwd

GSM8K_EXEMPLARS = (
    Item("ex1", "Tom has 3 boxes with 4 pencils in each box. He gives away 5 pencils. How many pencils does he "
         "have left?", ("7",), "Tom has 3 * 4 = 12 pencils. After giving away 5, he has 12 - 5 = 7 pencils.\n"
         "The answer is 7."),
    Item("ex2", "Pens cost $2 each. Maria buys 6 pens and pays with a $20 bill. How much change does she get?",
         ("8",), "6 pens cost 6 * 2 = $12. Her change is 20 - 12 = $8.\nThe answer is 8."),
    Item("ex3", "A train travels at 60 miles per hour for 3 hours, then at 40 miles per hour for 2 hours. How many "
         "miles does it travel in total?", ("260",), "First it travels 60 * 3 = 180 miles. Then it travels "
         "40 * 2 = 80 miles. In total it travels 180 + 80 = 260 miles.\nThe answer is 260."),
    Item("ex4", "Sara had 24 cookies. She ate a quarter of them and shared the rest equally among herself and 2 "
         "friends. How many cookies did each person get?", ("6",), "She ate 24 / 4 = 6 cookies, so 24 - 6 = 18 "
         "were left. Shared among 3 people, each got 18 / 3 = 6 cookies.\nThe answer is 6."),
)

register_task(TaskSpec(
    name="gsm8k", description="grade-school math word problems (JSONL question/answer with '#### N')",
    answer="number", modes=("direct", "cot"), source="file", fmt="gsm8k", local=LOCAL_GSM8K,
    hub=("openai/gsm8k", "main", "test"), exemplars=GSM8K_EXEMPLARS, shots=4))
