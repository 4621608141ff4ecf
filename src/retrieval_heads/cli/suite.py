"""The `rheads suite` subcommands: the long-context suite (RULER's tasks) and its runs.

  rheads suite list
  rheads suite run --model smollm2-135m --tasks niah_single_2,vt,qa_2 --lengths 4000,8000 --samples 20 \\
      --out runs/suite [--data RULER_DIR [--task-name T]] [--kv POLICY --scores S] [--mask top:20 --scores S]

`--seed` is the sample generation seed (which needles, values and distractors each sample gets). Every flag is
turned into the run's `SuiteConfig`, and checked (tasks, lengths, RULER files, KV settings, mask), before the
model loads; the rest (context, scores' shape, qa data) before --out is written.

Left out on purpose: anything the library does not do; the handler loads the model once and prints a table.
"""

from __future__ import annotations


from ..capture.modes import BUILTIN_ABLATION_DOCS, ablation_help
from ..errors import ParamError
from .common import (add_chat_args, add_model_args, add_out_args, add_shard_arg, finish_shard, load, model_config,
                     parse_list)
from .kv import add_kv_args, kv_config, kv_line


def _lengths(spec: str | None) -> list[int] | None:
    if spec is None:
        return None
    try:
        out = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out:
        raise ParamError("lengths", spec, "write a comma list of token counts, e.g. 4000,8000")
    return out


def cmd_list(a) -> None:
    from ..evals.suite.registry import get_task, task_names

    for n in task_names():
        t = get_task(n)
        print(f"{n:<17} {t.family:<12} {t.metric:<18} {t.description}")


def suite_config(a):
    """The `SuiteConfig` of the flags, checked (no model needed)."""
    from ..evals.suite.run import SuiteConfig, check_config

    mc = model_config(a)
    tasks = parse_list(a.tasks)
    lengths = _lengths(a.lengths) if a.lengths is not None or a.data else _lengths("4000,8000")
    config = SuiteConfig(model=mc, tasks=tasks if tasks is not None else (None if a.data else SuiteConfig().tasks),
                         lengths=lengths, samples=a.samples, seed=a.seed, haystack=a.haystack, chat=a.chat,
                         data=a.data, task_name=a.task_name, qa_data=a.qa_data, heldout=a.heldout,
                         max_new_tokens=a.max_new_tokens, mask=a.mask, scores=a.scores, ablation=a.ablation,
                         threshold=a.threshold, mask_seed=a.mask_seed,
                         kv=kv_config(a), shard=a.shard)
    check_config(config)
    return config


def cmd_run(a) -> None:
    config = suite_config(a)  # one-line errors before torch loads
    from ..evals.suite.run import run_suite
    from ..evals.suite.summary import format_table

    _, model, tokenizer = load(a)
    summary = run_suite(model, tokenizer, config, out=a.out, overwrite=a.overwrite, batch_size=a.batch_size)
    print(format_table(summary))
    print(kv_line(summary))
    finish_shard(a)
    print(f"\nresults in {a.out}/ (predictions.jsonl, summary.json, heatmap.png)")


def add_parsers(sub) -> None:
    """Add `suite` with its subcommands list and run."""
    p = sub.add_parser("suite", help="the long-context suite: RULER's tasks at exact token lengths, or RULER files",
                       description="RULER's task families (retrieval, multi-hop tracing, aggregation, QA) generated "
                       "at token lengths of the model's tokenizer and chat template, or read from RULER files, "
                       "scored with RULER's string-match metrics.")
    sp = p.add_subparsers(dest="suite_command", metavar="{list,run}", required=True)
    s = sp.add_parser("list", help="one line per task: name, family, metric, description")
    s.set_defaults(func=cmd_list)

    s = sp.add_parser("run", help="generate (or read) the tasks, decode greedily, score; resumable",
                      description="Each prompt is the task's input as the user turn of the chat template, then its "
                      "answer prefix at the start of the assistant turn; its token count is the largest at or below "
                      "the length that the task's haystack unit allows. Rerun the same command to resume.")
    add_model_args(s)
    s.add_argument("--tasks", default=None, help="comma list of tasks (default: every generated task; with --data, "
                   "the data's tasks); see rheads suite list")
    s.add_argument("--lengths", default=None, help="prompt lengths in tokens, chat template included (default: "
                   "4000,8000; with --data: the cells RULER lengths fall in, default each file's largest length)")
    s.add_argument("--samples", type=int, default=20, help="samples per task and length (default: %(default)s)")
    s.add_argument("--seed", type=int, default=42, help="sample generation seed (default: %(default)s)")
    s.add_argument("--haystack", default="paul-graham", help="essay haystack: a name, a directory of .txt files or a "
                   ".txt file (default: %(default)s)")
    add_chat_args(s)
    s.add_argument("--data", default=None, help="a RULER JSONL or a folder of <task>/validation.jsonl, instead of "
                   "generating (generate them with --model_template_type base)")
    s.add_argument("--task-name", default=None, help="the task of a single --data file (default: its folder name)")
    s.add_argument("--qa-data", default=None, help="HaluEval QA jsonl for qa_2 (default: <cache>/data/, put there "
                   "by scripts/setup.sh --suite-data)")
    s.add_argument("--heldout", default=None, help="reserved HaluEval rows, never used (default: "
                   "../shared/data/halueval_qa_heldout_rows.txt next to the repository or the working directory)")
    s.add_argument("--max-new-tokens", type=int, default=None, help="new tokens per answer (default: each task's "
                   "RULER budget: niah 128, vt 30, cwe 120, fwe 50, qa 32)")
    s.add_argument("--mask", default="none", help="heads masked in every step: none, top:K, random:K, "
                   "random-layer:K or heads:16-19,11-15 (default: none)")
    s.add_argument("--scores", default=None, help="score file for top/random masks and score-driven KV policies")
    s.add_argument("--ablation", default="zero", choices=sorted(BUILTIN_ABLATION_DOCS), help=ablation_help())
    s.add_argument("--threshold", type=float, default=0.1, help="retrieval heads score above it (default: 0.1)")
    s.add_argument("--mask-seed", type=int, default=0, help="seed of the random:K mask draw (default: 0)")
    add_kv_args(s)
    s.add_argument("--batch-size", type=int, default=1, help="prompts decoded together (left-padded)")
    add_out_args(s, "runs/suite")
    add_shard_arg(s)
    s.set_defaults(func=cmd_run)
