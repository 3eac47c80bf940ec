"""The documentation: README.md stays short, docs/results.md is what experiments/report.py writes from
the committed tables, every relative link resolves, and the README's test command is the one CI runs.

Reads text files only (no torch, no runs), so it takes well under a second.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 250

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"""<a\b[^>]*?\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def _report():
    """experiments/report.py, loaded from its file (standard library only, so this imports nothing else)."""
    name = "_docs_test_report"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / "report.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks, inline code removed."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, INLINE_CODE.sub("", line)))
    return out


def _links(path: Path) -> list[tuple[int, str]]:
    return [(n, target) for n, line in _prose_lines(path)
            for target in MD_LINK.findall(line) + HTML_LINK.findall(line)]


def _slug(text: str) -> str:
    """GitHub's anchor for a heading's text (inline-code backticks and punctuation dropped)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for _, line in _prose_lines(path):
        anchors.update(HTML_ANCHOR.findall(line))
    for line in _headings_text(path):
        base = _slug(line)
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


def _headings_text(path: Path) -> list[str]:
    """Headings' raw text (inline code kept, so that its content counts in the anchor)."""
    out, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            out.append(m.group(2))
    return out


def test_results_page_is_current():
    report = _report()
    expected = report.render()
    current = report.OUT.read_text(encoding="utf-8") if report.OUT.is_file() else ""
    assert current == expected, "docs/results.md is out of date: run `python -m experiments.report` and commit it"
    assert report.main(["--check"]) == 0


def test_results_page_lists_every_committed_table():
    text = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    for table in sorted((REPO / "experiments" / "results").glob("*/table.md")):
        assert f"../experiments/results/{table.parent.name}/table.md" in text, f"{table.parent.name} is not in docs/results.md"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail to a page under docs/")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path):
    broken = []
    for number, target in _links(page):
        if EXTERNAL.match(target) or target.startswith("#"):
            continue
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        base = REPO if file_part.startswith("/") else page.parent
        if not (base / file_part.lstrip("/")).exists():
            broken.append(f"line {number}: {target}")
    assert not broken, f"{page.relative_to(REPO)}: links to missing files:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_anchors_name_headings(page: Path):
    """A link to ``page.md#anchor`` (or ``#anchor`` within the page) names a heading that exists there."""
    broken = []
    for number, target in _links(page):
        if EXTERNAL.match(target) or "#" not in target:
            continue
        file_part, anchor = target.split("#", 1)
        linked = page if not file_part else (page.parent / file_part).resolve()
        if linked.suffix != ".md" or not linked.is_file():
            continue  # a missing file is test_relative_links_resolve's to report
        if anchor not in _anchors(linked):
            broken.append(f"line {number}: {target}")
    assert not broken, f"{page.relative_to(REPO)}: anchors without a heading:\n" + "\n".join(broken)


def _readme_test_command() -> str:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Run the tests"))
    opening = next(i for i in range(start + 1, len(lines)) if FENCE.match(lines[i]))
    closing = next(i for i in range(opening + 1, len(lines)) if FENCE.match(lines[i]))
    body = [line.strip() for line in lines[opening + 1:closing] if line.strip()]
    assert len(body) == 1, f"README.md: the block after 'Run the tests' should be one command, got {body}"
    return body[0]


def _ci_test_command() -> str:
    """.ci/run's marked command, with the torch install it runs just before it: CI installs the CPU
    torch on a line of its own and spells ``pip install`` as ``python -m pip install -q``."""
    lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    marker = next(i for i, line in enumerate(lines)
                  if line.startswith("# ---") and "the README's test command" in line)
    command = lines[marker + 1].strip()
    torch = next(line.strip() for line in reversed(lines[:marker])
                 if line.strip() and not line.lstrip().startswith("#"))
    assert "torch==" in torch, f".ci/run: expected the torch install before the marked command, got {torch!r}"

    def plain(cmd: str) -> str:
        return re.sub(r"python -m pip install -q ", "pip install ", cmd)

    return f"{plain(torch)} && {plain(command)}"


def test_readme_test_command_is_the_ci_one():
    assert _readme_test_command() == _ci_test_command()
