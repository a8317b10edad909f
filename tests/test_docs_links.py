"""The docs hold together: relative links lead to files and headings that exist, the docs index
lists every page, and the metric names the troubleshooting and Grafana pages quote exist."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import REPO
from parkwatch.daemon.metrics import METRICS


def docs_with_links() -> list[Path]:
    """README.md, docs/*.md, grafana/README.md and examples/**/README.md, those that exist."""
    found = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
             REPO / "grafana" / "README.md", *sorted((REPO / "examples").rglob("README.md"))]
    return [p for p in found if p.is_file()]


_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text], one level of [] inside
                          r"\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"  # (target
                          r"(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")  # "title")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
_HREF = re.compile(r"""<a\s[^>]*\bhref\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*(?:\s#+)?\s*$")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_HTML_ANCHOR = re.compile(r"""<a\s[^>]*\b(?:name|id)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a fence line itself counts as code)."""
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
            continue
        if fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) <= {fence[0]}:
                fence = None
            continue
        out.append(line)
    return out


def without_code_spans(text: str) -> str:
    return _CODE_SPAN.sub(" ", text)


def links(path: Path) -> list[str]:
    """Every link target written in the file's prose (inline, reference and HTML links)."""
    prose = without_code_spans("\n".join(prose_lines(path.read_text(encoding="utf-8"))))
    targets = [m.group(1) for m in _INLINE_LINK.finditer(prose)]
    targets += [m.group(1) for m in _REF_DEF.finditer(prose)]
    targets += [m.group(1) for m in _HREF.finditer(prose)]
    return [t[1:-1] if t.startswith("<") and t.endswith(">") else t for t in targets]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lowercased, punctuation but '-' and '_'
    dropped, spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_([^_]+)_(?!\w)", r"\1", text)  # _emphasis_
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_" or c.isspace())
    return re.sub(r"\s", "-", text)


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 for repeated headings,
    and explicit HTML anchors."""
    lines = prose_lines(path.read_text(encoding="utf-8"))
    headings: list[str] = []
    for i, line in enumerate(lines):
        m = _ATX.match(line)
        if m:
            headings.append(m.group(2))
        elif (_SETEXT.match(line) and i > 0 and lines[i - 1].strip()
              and not lines[i - 1].lstrip().startswith(("|", "#", "-", "*", ">"))):
            headings.append(lines[i - 1].strip())
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in headings:
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    text = "\n".join(lines)
    out.update(m.group(1) for m in _HTML_ANCHOR.finditer(text))
    return out


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path):
        if not target or _SCHEME.match(target) or target.startswith("//"):
            continue  # web addresses are not checked here
        where, _, fragment = target.partition("#")
        dest = (path.parent / unquote(where)).resolve() if where else path
        if not dest.exists():
            problems.append(f"{target}: no such file {os.path.relpath(dest, REPO)}")
            continue
        if (fragment and dest.is_file() and dest.suffix == ".md"
                and unquote(fragment).lower() not in anchors(dest)):
            problems.append(f"{target}: {dest.name} has no heading '#{fragment}'")
    return problems


@pytest.mark.parametrize("doc", docs_with_links(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_existing_files_and_headings(doc: Path) -> None:
    problems = broken_links(doc)
    assert not problems, f"{doc.relative_to(REPO)}: broken links:\n  " + "\n  ".join(problems)


def test_the_link_checker_sees_links_headings_and_code(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text(
        "# Other page\n\n## `telemetry.spool`\n\n## Limits: `high_threshold` (kg)\n\n"
        "## 厂中厂 policy\n\n## Repeat\n\n## Repeat\n\n```sh\n# not a heading\n```\n",
        encoding="utf-8")
    assert anchors(tmp_path / "other.md") == {
        "other-page", "telemetryspool", "limits-high_threshold-kg", "厂中厂-policy",
        "repeat", "repeat-1"}
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#repeat-1) [web](https://example.com/x.md) [self](#title)\n"
        "# Title\n\n`[not a link](missing.md)`\n\n```\n[not a link](missing.md)\n```\n"
        "[gone](missing.md) [bad anchor](other.md#nope) ![img](pic.png \"a title\")\n"
        "[ref]: <other.md#other-page>\n",
        encoding="utf-8")
    assert links(page) == ["other.md#repeat-1", "https://example.com/x.md", "#title",
                           "missing.md", "other.md#nope", "pic.png", "other.md#other-page"]
    assert [p.split(":")[0] for p in broken_links(page)] == [
        "missing.md", "other.md#nope", "pic.png"]


def test_the_docs_index_lists_every_page() -> None:
    index = REPO / "docs" / "README.md"
    listed = {t.partition("#")[0] for t in links(index)}
    pages = {p.name for p in (REPO / "docs").glob("*.md") if p.name != "README.md"}
    missing = sorted(pages - listed)
    assert not missing, f"docs/README.md does not list {missing}"


_METRIC = re.compile(r"(?<![\w./-])parkwatch_[a-z0-9_]*[a-z0-9]")


def metric_names(path: Path) -> set[str]:
    """The parkwatch_... names inside the file's inline code spans."""
    text = "\n".join(prose_lines(path.read_text(encoding="utf-8")))
    return {name for span in _CODE_SPAN.finditer(text) for name in _METRIC.findall(span.group(2))}


def is_metric(name: str) -> bool:
    """A family of METRICS, as exposed (counters with _total) or without the _total, or a
    histogram's _bucket, _count or _sum series."""
    if name in METRICS or f"{name}_total" in METRICS:
        return True
    base, _, suffix = name.rpartition("_")
    return suffix in ("bucket", "count", "sum") and base in METRICS


@pytest.mark.parametrize("doc", ["docs/troubleshooting.md", "docs/grafana.md"])
def test_metric_names_quoted_in_the_docs_exist(doc: str) -> None:
    names = metric_names(REPO / doc)
    assert names, f"{doc} quotes no metric at all: is the pattern still right?"
    unknown = sorted(n for n in names if not is_metric(n))
    assert not unknown, f"{doc} names metrics the daemon does not expose: {unknown}"
