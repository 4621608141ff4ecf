"""The `rheads answer` command: answer questions from contexts with retrieval-head-guided methods and baselines.

  rheads answer --model M --scores S --input items.jsonl --methods greedy,cad,decore,copy,gated,abstain --out DIR
  rheads answer ... --shard i/n --out DIR/shard-i   # the i-th of n parts of the items; `rheads merge` joins them
  rheads answer list                       # one line per registered method, baselines marked
  rheads answer bench --split tune --methods greedy,copy,copy:k5 --param copy:k5.k=5 --out DIR
  rheads answer tune DIR                   # per method, its best setting on those tune items

Cheap checks (the input file, method names and parameters) run before the model loads; the prompts' fit in the
model's context before anything is written to --out.

Left out on purpose: anything the library does not do (`retrieval_heads.answer`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RHeadsError
from .common import (add_chat_args, add_model_args, add_out_args, add_shard_arg, finish_shard, load, model_config,
                     parse_list)


def cmd_list(a) -> None:
    from ..answer.registry import get_method_class, method_names

    for name in method_names():
        cls = get_method_class(name)
        kind = "baseline" if cls.baseline else "ours    "
        params = ", ".join(f"{k}={v!r}" for k, v in cls.params.items()) or "no parameters"
        print(f"{name:<10} {kind}  {cls.help}  [{params}]")


def cmd_answer(a) -> None:
    from ..answer.base import parse_params
    from ..answer.items import read_items
    from ..answer.registry import parse_methods
    from ..cluster.shard import parse_shard

    parse_shard(a.shard)  # its form before the model loads; its count against the items before --out is touched
    _check_scores(a, "rheads answer")
    if not a.input:
        raise RHeadsError("rheads answer needs --input FILE.jsonl (context, question, optional answers per line)")
    items = read_items(a.input)
    methods = parse_methods(a.methods)
    params = parse_params(a.param)
    from ..answer.run import AnswerConfig, build_methods, format_table, run_answer

    build_methods(AnswerConfig(methods=methods, params=params))  # parameter names and values, before the model loads

    mc, model, tok = load(a)
    config = AnswerConfig(model=mc, scores=a.scores, threshold=a.threshold, template=a.template, chat=a.chat,
                          input=a.input, methods=methods, params=params, max_new_tokens=a.max_new_tokens,
                          shared_prefill=a.shared_prefill, shard=a.shard)
    summary = run_answer(model, tok, config, a.out, items, overwrite=a.overwrite)
    finish_shard(a)
    print(format_table(summary))
    print(f"\nresults in {a.out}/ (answers.jsonl, summary.json, config.json)")


def _check_scores(a, command: str) -> None:
    if not a.scores:
        raise RHeadsError(f"{command} needs --scores: the scores.json `rheads detect` wrote for this model")
    from ..atlas.store import is_atlas_spec

    if not is_atlas_spec(a.scores) and not Path(a.scores).exists():
        raise RHeadsError(f"no score file at {a.scores}: pass the scores.json `rheads detect` wrote for this model")


def cmd_bench(a) -> None:
    from ..answer.base import parse_params
    from ..answer.registry import parse_methods
    from ..probes.grid import parse_grid

    _check_scores(a, "rheads answer bench")
    methods = parse_methods(a.methods)
    params = parse_params(a.param)
    from ..answer.bench.run import AnswerBenchConfig, run_answer_bench
    from ..answer.run import build_methods

    config = AnswerBenchConfig(model=model_config(a), scores=a.scores, threshold=a.threshold, methods=methods,
                               params=params, max_new_tokens=a.max_new_tokens, families=parse_list(a.families) or [],
                               lengths=parse_grid(a.lengths, "lengths"), depths=parse_grid(a.depths, "depths"),
                               halueval_items=a.halueval_items, split=a.split, per_family=a.items_per_family,
                               seed=a.item_seed, template=a.template, chat=a.chat, shared_prefill=a.shared_prefill)
    build_methods(config.answer_config())  # parameter names and values, before the model loads
    _, model, tok = load(a)
    run_answer_bench(model, tok, config, a.out, overwrite=a.overwrite)
    print((Path(a.out) / "tables.md").read_text())
    print(f"results in {a.out}/ (bench.json, tables.md, risk_coverage.png, items.jsonl, answers.jsonl)")


def cmd_tune(a) -> None:
    from ..answer.bench.tune import flags, format_tuned, tune

    tuned = tune(a.run)
    print(format_tuned(tuned))
    for name, e in tuned["methods"].items():
        if e["arm"] is None:
            print(f"\n{name}: its tune objective ruled out every setting (abstain: none kept 80% of the answers); "
                  "none chosen")
    fl = flags(tuned)
    print("\nthe chosen settings: " + (" ".join(fl) if fl else "the defaults of every method chosen"))
    print(f"written to {a.run}/tuned.json")


def _add_prefill_arg(p) -> None:
    p.add_argument("--no-shared-prefill", dest="shared_prefill", action="store_false",
                   help="prefill every pass and every monitor report on its own, instead of once per question and "
                   "ablation, copied (same answers up to float rounding; slower)")


def add_parsers(sub) -> None:
    """Add `answer` (run methods by default; subcommands list, bench, tune)."""
    p = sub.add_parser("answer", help="answer from contexts with retrieval-head-guided methods, CAD and DeCoRe",
                       description="Answer each item of --input with each method of --methods; the monitor scores "
                       "every answer. `rheads answer list` shows the methods.")
    add_model_args(p)
    p.add_argument("--scores", default=None, help="scores.json of this model (rheads detect or the paper's)")
    p.add_argument("--threshold", type=float, default=0.1, help="retrieval heads score above it (default: 0.1)")
    p.add_argument("--template", default="default",
                   help="prompt template: default, paper, or a format string with {context} and {question}")
    add_chat_args(p)
    p.add_argument("--input", default=None,
                   help='JSONL: {"id", "context", "question", "answers": [gold strings, optional]} per line')
    p.add_argument("--methods", default="greedy",
                   help="comma list of methods (see `rheads answer list`), or all (default: greedy)")
    p.add_argument("--param", action="append", default=None, metavar="METHOD.NAME=VALUE",
                   help="a method parameter, e.g. cad.a=1.0 (repeatable; defaults: `rheads answer list`)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="answer token budget (default: 32)")
    _add_prefill_arg(p)
    add_out_args(p, "runs/answer")
    add_shard_arg(p, "items (each answered by every method)")
    p.set_defaults(func=cmd_answer)
    ms = p.add_subparsers(dest="answer_command", metavar="{list,bench,tune}")
    b = ms.add_parser("bench", help="the methods on generated item families (NIAH, counterfactual, HaluEval QA): "
                      "accuracy, hallucinations, abstention, the monitor on the model's own errors")
    add_model_args(b)
    b.add_argument("--scores", default=None, help="scores.json of this model (rheads detect or the paper's)")
    b.add_argument("--threshold", type=float, default=0.1, help="retrieval heads score above it (default: 0.1)")
    b.add_argument("--template", default="default", help="prompt template (default: default)")
    add_chat_args(b)
    b.add_argument("--methods", default="greedy,cad,decore,copy,gated,abstain",
                   help="comma list of methods, or all; METHOD:TAG adds a variant of a method with its own "
                   "--param METHOD:TAG.NAME=VALUE, to compare settings on --split tune (default: %(default)s)")
    b.add_argument("--param", action="append", default=None, metavar="METHOD.NAME=VALUE",
                   help="a method parameter, e.g. cad.a=1.0 or copy:k10.k=10 (repeatable)")
    b.add_argument("--max-new-tokens", type=int, default=32, help="answer token budget (default: 32)")
    _add_prefill_arg(b)
    b.add_argument("--families", default="niah,counterfactual,halueval",
                   help="item families among niah, counterfactual, halueval, qa_2 (the suite's qa_2 at each length) "
                   "(default: %(default)s; halueval and qa_2 need setup.sh --suite-data)")
    b.add_argument("--lengths", default="2000,4000,8000", help="NIAH and counterfactual prompt lengths "
                   "(default: %(default)s)")
    b.add_argument("--depths", default="0:100:5", help="depths in percent, rotating over the items "
                   "(default: %(default)s)")
    b.add_argument("--halueval-items", type=int, default=100, help="HaluEval QA rows drawn, reserved rows never "
                   "(default: 100)")
    b.add_argument("--split", choices=["eval", "tune"], default="eval",
                   help="eval: the reported items; tune: disjoint items to choose --param values on (the detect "
                   "needles, the other half of the counterfactual facts and HaluEval rows) (default: eval)")
    b.add_argument("--items-per-family", type=int, default=None, metavar="N",
                   help="a seeded sample of N items per family (default: all)")
    b.add_argument("--item-seed", type=int, default=42, help="seed of the item draw (default: 42)")
    add_out_args(b, "runs/answer-bench")
    b.set_defaults(func=cmd_bench)
    lst = ms.add_parser("list", help="one line per answering method, saying which are baselines")
    lst.set_defaults(func=cmd_list)
    t = ms.add_parser("tune", help="choose each method's parameters from a `bench --split tune` run with variants "
                      "(METHOD:TAG): writes tuned.json there and prints the --param flags",
                      description="Per method, the setting (the plain method or one of its METHOD:TAG variants) "
                      "with the best accuracy on the tune items (abstain: the best selective accuracy among those "
                      "keeping 80% of the answers); ties go to the defaults. Refuses an eval-split run.")
    t.add_argument("run", help="the folder of a `rheads answer bench --split tune` run")
    t.set_defaults(func=cmd_tune)
