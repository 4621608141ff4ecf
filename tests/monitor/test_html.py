"""The HTML view: self-contained (no script, no external resource), every copied token a link whose target exists
and holds the source text, unsupported tokens highlighted; and in headless Chromium: the links resolve, the
target of a link is highlighted when followed, nothing scrolls sideways, a screenshot renders.

The Chromium test needs Debian's `chromium` (apt-get install -y chromium); it is skipped without it."""

from __future__ import annotations

import html as htmllib
import re
import shutil
import subprocess

import pytest

from retrieval_heads.monitor.html import render_html, write_html
from retrieval_heads.monitor.prompt import build_prompt
from retrieval_heads.monitor.score import make_token, report
from retrieval_heads.monitor.recording import StepSignals

CONTEXT = "The baker sold bread. " + " ".join(["bread"] * 400) + " The key is kept under a loose floor tile."
QUESTION = "What did the baker sell?"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900"]
PROBE = """<script>window.addEventListener('load', () => {
  const b = document.body, links = [...document.querySelectorAll('a.tok[href^="#"]')];
  b.dataset.links = links.length;
  b.dataset.resolved = links.filter(a => document.getElementById(a.getAttribute('href').slice(1))).length;
  b.dataset.uns = document.querySelectorAll('#answer .tok.uns').length;
  const t = document.querySelector(':target');
  b.dataset.target = t ? t.id : '';
  b.dataset.targetbg = t ? getComputedStyle(t).backgroundColor : '';
  const u = document.querySelector('.tok.uns');
  b.dataset.unsbg = u ? getComputedStyle(u).backgroundColor : '';
  b.dataset.scrollwidth = document.documentElement.scrollWidth;
  b.dataset.viewport = window.innerWidth;
  b.dataset.pagescroll = Math.round(document.scrollingElement.scrollTop);
  b.dataset.targettop = t ? Math.round(t.getBoundingClientRect().top) : -1;
  b.dataset.answertop = Math.round(document.getElementById('answer').getBoundingClientRect().top);
  b.dataset.height = window.innerHeight;
});</script>"""


@pytest.fixture(scope="module")
def rep(tok):
    """A report whose copied tokens point at real context and question tokens of the prompt."""
    prompt = build_prompt(tok, CONTEXT, QUESTION)
    words = {"context": [], "question": []}  # (slot, kind, a, b, text) of whole-word tokens
    for slot in range(prompt.n):
        hit = prompt.source_of(slot)
        if hit:
            text = (CONTEXT if hit[0] == "context" else QUESTION)[hit[1]:hit[2]]
            if len(text.strip()) >= 3 and text.strip().isalpha():
                words[hit[0]].append((slot, *hit, text))
    q, c1, c2, c3 = words["question"][0], words["context"][1], words["context"][2], words["context"][-1]
    plan = [(q, 0.0, 0.9), (c1, 0.8, 0.0), (c2, 0.9, 0.0), (" and", 0.0, 0.0), (" a", 0.0, 0.0),
            (" castle", 0.0, 0.0), (" of", 0.0, 0.0), (" gold", 0.0, 0.0), (c3, 0.7, 0.0), (".", 0.0, 0.0)]
    answer, toks = "", []
    for i, (what, c, qq) in enumerate(plan):
        source, text = None, what
        if isinstance(what, tuple):
            slot, kind, a, b, word = what
            source, text = {"kind": kind, "start": a, "end": b, "slot": slot}, " " + word.strip()
        answer += text
        toks.append(make_token(i, 10 + i, text, len(answer) - len(text), answer,
                               StepSignals(c, qq, int(c + qq > 0), 0.3, source and source["slot"]), source, -0.5, 1.0))
    return report(answer, toks, "eos", prompt.n)


def test_page_is_self_contained_and_links_resolve(rep):
    page = render_html(rep, CONTEXT, QUESTION, model="tiny")
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    links = re.findall(r'<a class="tok (?:sup|echo)" href="#([^"]+)"', page)
    linked = [t for t in rep.tokens if t.source is not None and not t.unsupported]
    assert len(linked) == 4 and len(links) == len(linked)
    assert [t.text.strip() for t in rep.tokens if t.unsupported] == ["castle", "gold"]
    for anchor, t in zip(links, linked):
        m = re.search(rf'<span class="src" id="{anchor}">([^<]*)</span>', page)
        assert m, anchor
        src = CONTEXT if t.source["kind"] == "context" else QUESTION
        assert htmllib.unescape(m.group(1)) == src[t.source["start"]:t.source["end"]]
    answer = re.search(r'<div class="answer" id="answer">(.*?)</div>', page, re.S).group(1)
    assert answer.count('class="tok uns"') == sum(t.unsupported for t in rep.tokens) > 0
    assert htmllib.escape(rep.verdict) in page


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("chromium is not installed: apt-get update && apt-get install -y chromium")
    return exe


def test_page_renders_in_headless_chromium(rep, tmp_path):
    exe = _chromium()
    page = write_html(tmp_path / "answer.html", rep, CONTEXT, QUESTION, model="tiny")
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    target = re.findall(r'href="#(src-\d+)"', page.read_text())[-1]  # the last word of the long context
    common = [exe, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri() + "#" + target],
                         capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, f"no DOM from chromium: {dom.stderr[-2000:]}"
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    assert int(attrs["links"]) == int(attrs["resolved"]) > 0
    assert int(attrs["uns"]) == sum(t.unsupported for t in rep.tokens)
    assert attrs["target"] == target and attrs["targetbg"] == "rgb(255, 224, 102)"  # the followed source lights up
    assert attrs["unsbg"] == "rgb(255, 179, 179)"
    assert int(attrs["scrollwidth"]) <= int(attrs["viewport"])
    # following the link scrolled the context box, not the page: the answer and the source are both in view
    assert int(attrs["pagescroll"]) == 0 and 0 <= int(attrs["answertop"]) < int(attrs["targettop"]) < int(attrs["height"])
    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_legend_states_the_scale_the_score_has(rep):
    """The page's scale note is the formula of the score it shows: recomputing 1 - (max(copy, copy_q) + mass) / 2
    over the counted tokens gives the displayed number; an answer every head copied in full scores 1 - mass / 2 - 1/2,
    not 0, and the note says 0 needs all the attention on the context too."""
    from retrieval_heads.monitor.html import SCALE
    from retrieval_heads.monitor.rules import counted

    page = render_html(rep, CONTEXT, QUESTION)
    assert htmllib.escape(SCALE) in page and "0 = every counted token copied" not in page
    shown = float(re.search(r'<b id="score">([0-9.]+)</b>', page).group(1))
    keep = counted([t.content for t in rep.tokens], [t.echo for t in rep.tokens])
    by_formula = sum(1 - (max(rep.tokens[i].copy, rep.tokens[i].copy_q) + rep.tokens[i].mass) / 2 for i in keep) / len(keep)
    assert shown == pytest.approx(by_formula, abs=5e-4)
    full = [make_token(i, 10 + i, w, 6 * i, "".join(["word  "] * (i + 1)), StepSignals(1.0, 0.0, 3, 0.3, None), None,
                       -0.1, 0.5) for i, w in enumerate(["word  "] * 3)]
    copied = report("word  word  word  ", full, "given", 5)
    assert copied.hallucination_score == pytest.approx(0.35) and "with all its attention on the context" in SCALE
