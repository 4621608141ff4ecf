"""The `rheads monitor` command: a retrieval-head hallucination monitor for answers grounded in a context.

  rheads monitor --model M --scores S --context doc.txt --question "..." [--html answer.html] [--json out.json]
  rheads monitor score --model M --scores S --input items.jsonl --out runs/mon
  rheads monitor bench --model M --scores S --out runs/monbench [--shard i/n]
  rheads monitor evaluate runs/monbench               # recompute summary.json and tables.md of a bench run

Without a subcommand it generates an answer, streaming it, then prints it with unsupported tokens in [[...]], the
hallucination score and the verdict. Cheap checks (files, question, output paths) run before the model loads; the
rest (lengths against the model's context, counts, the score file's shape) before anything is written to --out.

Left out on purpose: anything the library does not do (`retrieval_heads.monitor`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import RHeadsError
from .common import add_chat_args, add_model_args, add_out_args, add_shard_arg, finish_shard, load, model_config


def _add_monitor_args(p: argparse.ArgumentParser, scores_required: bool = True) -> None:
    add_model_args(p)
    p.add_argument("--scores", default=None, help="scores.json of this model (rheads detect or the paper's)")
    p.add_argument("--threshold", type=float, default=0.1, help="retrieval heads score above it (default: 0.1)")
    p.add_argument("--template", default="default",
                   help="prompt template: default, paper, or a format string with {context} and {question}")
    add_chat_args(p)


def _need_scores(a, command: str) -> str:
    if not a.scores:
        raise RHeadsError(f"{command} needs --scores: the scores.json `rheads detect` wrote for this model")
    from ..atlas.store import is_atlas_spec

    if not is_atlas_spec(a.scores) and not Path(a.scores).exists():
        raise RHeadsError(f"no score file at {a.scores}: pass the scores.json `rheads detect` wrote for this model")
    return a.scores


def _check_dest(flag: str, path: Path) -> None:
    """An output file the command can write (checked before the model loads): not a folder, under folders."""
    if path.is_dir():
        raise RHeadsError(f"{flag} {path} is a folder: give a file path")
    up = path.parent
    while not up.exists() and up != up.parent:
        up = up.parent
    if not up.is_dir():
        raise RHeadsError(f"{flag} {path}: {up} is a file, not a folder: give a path under a folder")


def _marked(rep) -> str:
    out, at = [], 0
    for s, e in rep.unsupported:
        out += [rep.answer[at:s], "[[", rep.answer[s:e], "]]"]
        at = e
    return "".join(out + [rep.answer[at:]])


def cmd_generate(a) -> None:
    from ..monitor import Monitor
    from ..monitor.html import write_html

    scores = _need_scores(a, "rheads monitor")
    if not a.context:
        raise RHeadsError("rheads monitor needs --context FILE: the document the answer should come from")
    path = Path(a.context)
    if path.is_dir():
        raise RHeadsError(f"context file {path} is a folder: give a UTF-8 text file")
    if not path.is_file():
        raise RHeadsError(f"context file {path} does not exist: give a UTF-8 text file")
    try:
        context = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RHeadsError(f"context file {path} is not UTF-8 text: convert it to UTF-8") from None
    if not context.strip():
        raise RHeadsError(f"context file {path} is empty: give the document the answer should come from")
    if not a.question or not a.question.strip():
        raise RHeadsError("rheads monitor needs --question TEXT: the question to answer from the context")
    for flag, dest in (("--html", a.html), ("--json", a.json)):
        if dest:
            _check_dest(flag, Path(dest))
    if a.max_new_tokens < 1:
        raise RHeadsError(f"--max-new-tokens {a.max_new_tokens}: give the answer's token budget, a whole number >= 1")
    _, model, tok = load(a)
    mon = Monitor(model, tok, scores, threshold=a.threshold, template=a.template, chat=a.chat,
                  max_new_tokens=a.max_new_tokens)
    stream = mon.generate(context, a.question)
    for t in stream:
        print(t.text, end="", flush=True)
    rep = stream.result()
    print("\n")
    print(f"answer (unsupported in [[...]]): {_marked(rep)}")
    score = "-" if rep.hallucination_score is None else f"{rep.hallucination_score:.3f}"
    print(f"hallucination score: {score}   verdict: {rep.verdict}")
    b = rep.baselines
    print("baselines: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in b.items()))
    if a.html:
        print(f"html: {write_html(a.html, rep, context, a.question, model=a.model)}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"context_file": str(path), "question": a.question, **rep.to_dict()},
                                           indent=1))
        print(f"json: {a.json}")


def cmd_score(a) -> None:
    from ..monitor.batch import ScoreConfig, read_items, run_score

    scores = _need_scores(a, "rheads monitor score")
    if not a.input:
        raise RHeadsError("rheads monitor score needs --input FILE.jsonl (context, question, answer per line)")
    items = read_items(a.input)
    mc, model, tok = load(a)
    config = ScoreConfig(model=mc, scores=scores, threshold=a.threshold, template=a.template, chat=a.chat,
                         input=a.input)
    summary = run_score(model, tok, config, a.out, items, overwrite=a.overwrite)
    print(f"{summary['n']} answers scored; mean hallucination score {summary['mean_hallucination_score']}; "
          f"verdicts {summary['verdicts']}")
    print(f"results in {a.out}/ (items.jsonl, summary.json)")


def cmd_bench(a) -> None:
    from ..cluster.shard import parse_shard
    from ..monitor.bench.run import BenchConfig, run_bench
    from ..probes.grid import parse_grid

    scores = _need_scores(a, "rheads monitor bench")
    if a.random_seeds < 0:
        raise RHeadsError(f"--random-seeds {a.random_seeds}: give a number of random head sets >= 0")
    parse_shard(a.shard)  # its form before the model loads; its count against the items before --out is touched
    config = BenchConfig(model=model_config(a), scores=scores, threshold=a.threshold,
                         lengths=parse_grid(a.lengths, "lengths"), depths=parse_grid(a.depths, "depths"),
                         niah_per_cell=a.niah_per_cell, cf_per_cell=a.cf_per_cell,
                         unanswerable_per_cell=a.unanswerable_per_cell, needles=a.needles,
                         haystack=a.haystack, template=a.template, chat=a.chat, max_new_tokens=a.max_new_tokens,
                         random_seeds=list(range(a.random_seeds)), seed=a.item_seed, limit=a.limit,
                         shard=a.shard)
    _, model, tok = load(a)
    run_bench(model, tok, config, a.out, overwrite=a.overwrite)
    finish_shard(a)
    print((Path(a.out) / "tables.md").read_text())
    print(f"results in {a.out}/ (items.jsonl, summary.json, tables.md, arrays/)")


def cmd_pairs(a) -> None:
    from ..monitor.bench.pairs import PairsConfig, format_table, run_pairs
    from ..probes.grid import parse_grid

    scores = _need_scores(a, "rheads monitor pairs")
    config = PairsConfig(model=model_config(a), scores=scores, threshold=a.threshold,
                         lengths=parse_grid(a.lengths, "lengths"), depths=parse_grid(a.depths, "depths"),
                         haystack=a.haystack, template=a.template, chat=a.chat, seed=a.item_seed)
    _, model, tok = load(a)
    summary = run_pairs(model, tok, config, a.out, overwrite=a.overwrite)
    print(format_table(summary))
    print(f"results in {a.out}/ (pairs.jsonl, summary.json)")


def cmd_evaluate(a) -> None:
    from ..monitor.bench.evaluation import evaluate_run

    run = Path(a.run)
    if not (run / "items.jsonl").is_file():
        raise RHeadsError(f"{run} is not a `rheads monitor bench` directory (no items.jsonl)")
    evaluate_run(run)
    print((run / "tables.md").read_text())


def add_parsers(sub) -> None:
    """Add `monitor` (generate by default; subcommands score, bench, evaluate)."""
    p = sub.add_parser("monitor", help="answer from a context and mark the tokens the retrieval heads did not copy",
                       description="Generate an answer with the retrieval heads monitored (default), score given "
                       "answers (score), or run the labelled benchmark (bench).")
    _add_monitor_args(p)
    p.add_argument("--context", default=None, help="a UTF-8 text file: the document to answer from")
    p.add_argument("--question", default=None, help="the question")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--html", default=None, help="write the offline HTML view of the answer here")
    p.add_argument("--json", default=None, help="write the full report (tokens, signals, baselines) here")
    p.set_defaults(func=cmd_generate)
    ms = p.add_subparsers(dest="monitor_command", metavar="{score,bench,pairs,evaluate}")

    s = ms.add_parser("score", help="teacher-forced scores of given answers (JSONL in, JSONL out)")
    _add_monitor_args(s)
    s.add_argument("--input", default=None, help="JSONL: context, question, answer (and an optional id) per line")
    add_out_args(s, "runs/mon")
    s.set_defaults(func=cmd_score)

    b = ms.add_parser("bench", help="the labelled benchmark: NIAH and counterfactual QA, monitor vs baselines")
    _add_monitor_args(b)
    b.add_argument("--lengths", default="1000,2000,4000,8000", help="prompt lengths in tokens (default: %(default)s)")
    b.add_argument("--depths", default="0:100:5", help="depths in percent (default: %(default)s)")
    b.add_argument("--niah-per-cell", type=int, default=2, help="depths per (needle, length) (default: 2)")
    b.add_argument("--cf-per-cell", type=int, default=1, help="depths per (fact, length) (default: 1)")
    b.add_argument("--unanswerable-per-cell", type=int, default=0,
                   help="depths per (fact, length) with the fact left out of the context and another fact's "
                        "sentence in its place: any answer is wrong (default: 0)")
    b.add_argument("--needles", default="eval", help="needle set for the NIAH items (default: eval)")
    b.add_argument("--haystack", default="paul-graham")
    b.add_argument("--max-new-tokens", type=int, default=48)
    b.add_argument("--random-seeds", type=int, default=3, help="random non-retrieval head sets (default: 3)")
    b.add_argument("--item-seed", type=int, default=42, help="seed of the item order (default: 42)")
    b.add_argument("--limit", type=int, default=None, help="only the first N items of the order")
    add_out_args(b, "runs/monbench")
    add_shard_arg(b, "items")
    b.set_defaults(func=cmd_bench)

    q = ms.add_parser("pairs", help="short answers in pairs: is the real-world answer less supported than the "
                      "one the context states? (teacher-forced; copies by text and by id)")
    _add_monitor_args(q)
    q.add_argument("--lengths", default="500", help="prompt lengths in tokens (default: %(default)s)")
    q.add_argument("--depths", default="0:100:5", help="depths in percent, rotating over the facts (default: %(default)s)")
    q.add_argument("--haystack", default="paul-graham")
    q.add_argument("--item-seed", type=int, default=42, help="seed of the pair order (default: 42)")
    add_out_args(q, "runs/pairs")
    q.set_defaults(func=cmd_pairs)

    e = ms.add_parser("evaluate", help="recompute summary.json and tables.md of a bench run directory")
    e.add_argument("run", help="a `rheads monitor bench` directory")
    e.set_defaults(func=cmd_evaluate)
