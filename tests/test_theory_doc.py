"""docs/theory.md is the project's own theory page: every link into it resolves (issue 16.5)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THEORY = REPO / "docs" / "theory.md"


def anchors() -> set[str]:
    return set(re.findall(r'<a id="([a-z0-9-]+)"></a>', THEORY.read_text(encoding="utf-8")))


def test_contents_and_sections_agree():
    text = THEORY.read_text(encoding="utf-8")
    listed = re.findall(r"\]\(#([a-z0-9-]+)\)", text)
    assert listed and set(listed) <= anchors()
    assert {"setting", "geometries", "bounds", "predictions", "honest-numbers"} <= anchors()


def test_every_link_to_the_theory_page_resolves():
    sources = [REPO / "README.md", *REPO.glob("docs/*.md")]
    sources += [*REPO.glob("smoothprobe/**/*.py"), *REPO.glob("cli/**/*.py")]
    links = []
    for path in sources:
        for anchor in re.findall(r"theory\.md#([A-Za-z0-9-]+)", path.read_text(encoding="utf-8")):
            links.append((path.name, anchor))
    assert ("README.md", "predictions") in links  # the README links the formulas
    missing = [(name, a) for name, a in links if a not in anchors()]
    assert not missing, missing


def test_the_command_line_cites_no_missing_file():
    """Messages must point at files a user has: docs/theory.md, not the design notes."""
    for path in REPO.glob("cli/**/*.py"):
        assert "MATH.md" not in path.read_text(encoding="utf-8"), path
