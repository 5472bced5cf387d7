"""What every notebook must hold as text (issue 39): an answer for each "Check yourself" question,
an exercise with a checker from 03 on, and the method's equations from 02 on."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _markdown(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]


def _code(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_check_yourself_question_has_an_answer(path):
    cell = next(t for t in _markdown(path) if "## Check yourself" in t)
    questions = cell.split("## Check yourself", 1)[1].split("<details>", 1)[0]
    asked = re.findall(r"^(\d+)\. ", questions, re.M)
    assert asked, path.name
    answers = cell.split("<summary>Answers</summary>", 1)[1].split("</details>", 1)[0]
    assert re.findall(r"^(\d+)\. ", answers, re.M) == asked, path.name


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if int(p.name[:2]) >= 3], ids=lambda p: p.stem)
def test_notebooks_from_03_have_an_exercise_with_a_checker(path):
    from yolocompress.teach import exercises
    calls = [m for code in _code(path) for m in re.findall(r"exercises\.(check_\w+)\(", code)]
    assert calls and all(hasattr(exercises, c) for c in calls), path.name
    assert any("<summary>A solution</summary>" in t for t in _markdown(path)), path.name


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if int(p.name[:2]) >= 2], ids=lambda p: p.stem)
def test_notebooks_from_02_hold_the_equations_of_their_method(path):
    """At least one display equation, and every $ and $$ paired (an odd count renders the rest of
    the cell as math)."""
    text = "\n".join(_markdown(path))
    assert "$$" in text, path.name
    for cell in _markdown(path):
        assert cell.count("$$") % 2 == 0 and cell.replace("$$", "").replace("\\$", "").count("$") % 2 == 0, \
            (path.name, cell[:80])


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if int(p.name[:2]) >= 4], ids=lambda p: p.stem)
def test_results_notebooks_print_what_the_full_run_says(path):
    """From 04 on, the interpretation after the tables is generated from results.json (nb.full_run_says)."""
    from yolocompress.teach.report import SUMMARY_TOPICS
    calls = [m for code in _code(path) for m in re.findall(r"nb\.full_run_says\(S, (.*)\)", code)]
    assert calls, path.name
    for args in calls:
        assert {a.strip().strip("'\"") for a in args.split(",")} <= set(SUMMARY_TOPICS), args
