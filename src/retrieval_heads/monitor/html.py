"""A static, offline HTML view of one monitored answer: unsupported tokens highlighted, each copied token a link
to its source span in the context (or the question), the answer's score, verdict and baselines.

One self-contained page: inline CSS, no script, no external resource. The page is one window high: the answer
stays at the top and the context box below takes the rest, so a link scrolls only the box to the source token,
which `:target` highlights; hovering a token shows its signals.

Left out on purpose: several answers per page and interactivity beyond links (the page must work offline, from
a file, with scripts disabled).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .score import AnswerReport

_CSS = """
html,body{height:100%;margin:0}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:0 auto;padding:0 1em;
color:#1d1d1f;line-height:1.5;display:flex;flex-direction:column;box-sizing:border-box}
h1{font-size:1.3em;margin:.6em 0 .2em}.meta{color:#555;font-size:.9em}
.answer{font-size:1.15em;padding:.8em 1em;border:1px solid #ccc;border-radius:6px;background:#fafafa;
white-space:pre-wrap;word-wrap:break-word}
.tok{border-radius:3px}.tok.uns{background:#ffb3b3;box-shadow:0 0 0 1px #d33 inset}
a.tok.sup{color:inherit;text-decoration:none;border-bottom:2px solid #2a8a2a;background:#e3f5e3}
a.tok.echo{color:inherit;text-decoration:none;border-bottom:2px dotted #888}
.verdict{display:inline-block;padding:.15em .6em;border-radius:4px;font-weight:600}
.v-supported{background:#dff3df}.v-partly{background:#fff0c2}.v-unsupported{background:#ffd0d0}.v-nothing{background:#eee}
h2{font-size:1.1em;margin:.6em 0 .3em}
.context{white-space:pre-wrap;word-wrap:break-word;font-size:.9em;border:1px solid #ddd;border-radius:6px;
padding:.8em 1em;background:#fff;flex:1 1 auto;min-height:8em;overflow-y:auto;margin-bottom:1em}
details{font-size:.9em;margin:.2em 0}
.src{background:#eef6ee;scroll-margin-top:3em}.src:target{background:#ffe066;outline:2px solid #c90}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left}
.legend span{margin-right:1.2em}
"""


SCALE = ("The score is the mean, over the answer's counted tokens, of 1 - (c + m) / 2: c is the share of the "
         "retrieval heads' weight that copied the token (their top-1 attention on a context or question token of "
         "the same text), m their mean attention on the context. 0 only if every retrieval head copied every "
         "token with all its attention on the context; 1 if none copied and none looked at the context. An "
         "answer copied in full by some of the heads scores in between: compare scores, and read the verdict, "
         "which comes from the per-token flags.")


def _verdict_class(v: str) -> str:
    return {"supported": "v-supported", "partly unsupported": "v-partly", "unsupported": "v-unsupported"}.get(
        v, "v-nothing")


def _fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else html.escape(str(x)))


def _marked(text: str, spans: dict[tuple[int, int], str]) -> str:
    """`text` escaped, with each (start, end) span wrapped as <span class="src" id=...>."""
    out, at = [], 0
    for (a, b), anchor in sorted(spans.items()):
        if a < at or b <= a:
            continue
        out.append(html.escape(text[at:a]))
        out.append(f'<span class="src" id="{anchor}">{html.escape(text[a:b])}</span>')
        at = b
    out.append(html.escape(text[at:]))
    return "".join(out)


def render_html(rep: AnswerReport, context: str, question: str, *, title: str = "Retrieval-head monitor",
                model: str | None = None) -> str:
    """The page for one answer (see the module docstring)."""
    anchors: dict[str, dict[tuple[int, int], str]] = {"context": {}, "question": {}}
    toks = []
    for t in rep.tokens:
        tip = (f"token {t.index}: copy {t.copy:.2f}, from question {t.copy_q:.2f}, mass {t.mass:.2f}, "
               f"score {t.score:.2f}, logprob {t.logprob:.2f}")
        body = html.escape(t.text)
        src = t.source
        if t.unsupported:
            toks.append(f'<span class="tok uns" title="unsupported; {tip}">{body}</span>')
        elif src is not None and src.get("kind") in anchors:
            anchor = f"{'src' if src['kind'] == 'context' else 'q'}-{src['slot']}"
            anchors[src["kind"]][(src["start"], src["end"])] = anchor
            cls = "sup" if src["kind"] == "context" else "echo"
            toks.append(f'<a class="tok {cls}" href="#{anchor}" title="copied from the {src["kind"]}; {tip}">{body}</a>')
        else:
            toks.append(f'<span class="tok" title="{tip}">{body}</span>')
    base = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rep.baselines.items())
    variants = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rep.scores.items())
    n_uns = sum(t.unsupported for t in rep.tokens)
    n_sup = sum(1 for t in rep.tokens if t.source and t.source.get("kind") == "context")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{html.escape(model or "")} &middot; {rep.prompt_tokens} prompt tokens &middot; {len(rep.tokens)} answer tokens
&middot; stopped by {html.escape(rep.reason)}</p>
<p><b>Question:</b> <span class="question">{_marked(question, anchors["question"])}</span></p>
<p><span class="verdict {_verdict_class(rep.verdict)}">{html.escape(rep.verdict)}</span>
&nbsp; hallucination score <b id="score">{_fmt(rep.hallucination_score)}</b> &middot; {n_sup} tokens linked to the
context, {n_uns} unsupported</p>
<p class="meta scale" id="scale">{html.escape(SCALE)}</p>
<div class="answer" id="answer">{"".join(toks)}</div>
<p class="legend"><span class="tok uns">&nbsp;unsupported&nbsp;</span><span><a class="tok sup">copied from the
context</a> (click: its source)</span><span><a class="tok echo">repeats the question</a></span></p>
<details><summary>score variants and baselines</summary>
<table><tr><th>monitor variant</th><th>score</th></tr>{variants}</table><br>
<table><tr><th>baseline</th><th>value</th></tr>{base}</table></details>
<h2>Context</h2>
<div class="context" id="context">{_marked(context, anchors["context"])}</div>
</body></html>
"""


def write_html(path: str | Path, rep: AnswerReport, context: str, question: str, **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(rep, context, question, **kw), encoding="utf-8")
    return path
