"""The docs: generated blocks are fresh, relative links resolve, the README stays short."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKDOWN = [README, *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(?P<title>.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def prose(text: str) -> str:
    """Markdown without its code: fenced blocks and inline code spans."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of the headings of a Markdown file (a repeated one gets -1, -2...)."""
    found: set[str] = set()
    # Fenced blocks dropped (a `#` comment in a fence is no heading), inline code kept: a
    # heading's code is part of its anchor.
    for match in HEADING.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):
        anchor, n = slug(match["title"]), 0
        while anchor in found:
            n += 1
            anchor = f"{slug(match['title'])}-{n}"
        found.add(anchor)
    return found


def links(path: Path) -> list[str]:
    return [match["target"] for match in LINK.finditer(prose(path.read_text(encoding="utf-8")))]


def test_the_generated_blocks_are_up_to_date() -> None:
    before = {path: path.read_bytes() for path in MARKDOWN}
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # --check writes nothing.
    assert {path: path.read_bytes() for path in MARKDOWN} == before


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_docs_have_links() -> None:
    """The link check above reads links at all: the README links every page of docs/."""
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in links(README)
        if not target.startswith(("http:", "https:"))
    }
    pages = {path.resolve() for path in MARKDOWN if path != README}
    assert pages - linked == set()


def test_the_readme_is_at_most_180_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 180, f"README.md has {len(lines)} lines: move detail into docs/"


def test_the_readme_names_the_public_api_of_the_seed() -> None:
    text = README.read_text(encoding="utf-8")
    names = [
        "CacheStor",
        "TypeStorage",
        "cache(folder=",
        "cache_async(folder=",
        "join()",
        "db_file",
        "is_debug_log",
        "serialiser",
        "Serialise",
        "SerialiseBin",
        "SerialiseJson",
        "IN_MEMORY",
        "IN_DISK",
        "IN_REDIS",
    ]
    assert [name for name in names if name not in text] == []


def test_the_anchor_rules_match_github() -> None:
    cases = {
        "## Async functions: `cache_async`, `join()`, `close()`": (
            "async-functions-cache_async-join-close"
        ),
        "## Where `cache_async` stores": "where-cache_async-stores",
        "## Which function is this?": "which-function-is-this",
        "## Paths: `~` and `$VARIABLES`": "paths--and-variables",
    }
    for heading, anchor in cases.items():
        title = HEADING.match(heading)
        assert title is not None
        assert slug(title["title"]) == anchor
