"""README and the pages of docs/ stay true to the code (issue 41): README is short, every
``python -m yolocompress`` command they show parses with today's flags, every ``make`` target
they name exists, every relative link and every benchmark script they cite is there.
(The Python example is run by tests/test_api.py; the results block is checked against
docs/results.json by tests/test_readme.py.)"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from yolocompress.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "data" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GENERATED = {"docs/cliff.png"}   # written by make results; a clone before its first run may lack it


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)


def _commands(page: Path) -> list[list[str]]:
    """Every ``yolocompress`` command line in the page's bash blocks (continuations joined,
    comments dropped) and inline code, as argv after ``-m yolocompress``; lines with an ellipsis
    or a ``<placeholder>`` are sketches."""
    out, text = [], page.read_text()
    inline = re.findall(r"`((?:torchrun |python )[^`\n]*-m yolocompress [^`\n]+)`", text)
    for block in _bash_blocks(text) + inline:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].split("<", 1)[0]
            if "-m yolocompress " not in line or "..." in line:
                continue
            argv = shlex.split(line.split("-m yolocompress ", 1)[1])
            if argv and not argv[0].startswith("-") and "." not in argv[0]:   # not yolocompress.teach.source
                out.append(argv)
    return out


def test_readme_is_short_and_leads_with_install_commands_and_example():
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; move detail to docs/"
    first = "\n".join(lines[:80])      # a screen and a half
    for must in ("## Install", "make demo", "make test", "```python"):
        assert must in first, f"README's first 80 lines lack {must!r}"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_command_parses(page):
    parser = build_parser()
    for argv in _commands(page):
        try:
            parser.parse_args(argv)
        except SystemExit as e:
            pytest.fail(f"{_name(page)}: `yolocompress {' '.join(argv)}` does not parse (exit {e.code})")


def test_the_pages_show_commands():
    """The parser check above would pass on pages without commands: make sure it sees them."""
    assert sum(len(_commands(p)) for p in PAGES) >= 15


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_make_targets_exist(page):
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"(?m)^([a-z][a-z-]*):", makefile))
    named = set(re.findall(r"`make ([a-z][a-z-]*)`", page.read_text()))
    for block in _bash_blocks(page.read_text()):
        named |= set(re.findall(r"(?m)^make ([a-z][a-z-]*)", block))
    assert named <= targets, f"{_name(page)} names make targets the Makefile lacks: {named - targets}"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_exist(page):
    text = page.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"(?m)^\[[^\]]+\]: (\S+)", text)
    missing = []
    for link in links:
        if re.match(r"[a-z]+:", link) or link.startswith("#"):
            continue
        target = (page.parent / link.split("#")[0]).resolve()
        if not target.exists() and str(target.relative_to(ROOT)) not in GENERATED:
            missing.append(link)
    assert not missing, f"{_name(page)} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_cited_benchmarks_exist(page):
    cited = set(re.findall(r"benchmarks/(\w+\.py)", page.read_text()))
    missing = [c for c in cited if not (ROOT / "benchmarks" / c).is_file()]
    assert not missing, f"{_name(page)} cites benchmarks that do not exist: {missing}"
