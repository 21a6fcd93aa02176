"""A tiny, safe markdown-to-HTML renderer for report cards.

It knows exactly what ``bench.report`` writes: ATX headings, ``- `` bullet lists, GitHub pipe
tables, paragraphs, ``**bold**`` and ```code```. All text is HTML-escaped *before* any markup is
added, and the only tags produced are the fixed ones below, so submitted text can never inject
HTML. Anything unrecognised renders as an escaped paragraph.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def inline(text: str) -> str:
    """Escape ``text`` and then turn ``**x**`` and ```x``` into ``<strong>``/``<code>``."""
    html = str(escape(text))
    html = _CODE.sub(r"<code>\1</code>", html)
    return _BOLD.sub(r"<strong>\1</strong>", html)


_PIPE = re.compile(r"(?<!\\)\|")


def _cells(line: str) -> list[str]:
    """A table row's cells; ``\\|`` is a literal pipe inside a cell."""
    body = line.strip()
    body = body.removeprefix("|")
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [c.strip().replace("\\|", "|") for c in _PIPE.split(body)]


def _table(lines: list[str]) -> str:
    header, rows = lines[0], lines[1:]
    if rows and _TABLE_RULE.match(rows[0]):
        rows = rows[1:]
    else:
        header, rows = "", lines
    out = ['<div class="table-wrap"><table class="md-table">']
    if header:
        out.append("<thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in _cells(header)) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def drop_sections(text: str, titles: frozenset[str] | set[str]) -> str:
    """``text`` without its ``# `` title line and without the ``## <title>`` sections named in ``titles``."""
    kept: list[str] = []
    skipping = False
    for line in text.replace("\r\n", "\n").split("\n"):
        stripped = line.strip()
        if stripped.startswith("# "):
            continue
        if stripped.startswith("## "):
            skipping = stripped[3:].strip() in titles
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def render_markdown(text: str, *, heading_offset: int = 1, skip_sections: frozenset[str] | set[str] = frozenset()) -> Markup:
    """Safe HTML for ``text``; headings are demoted by ``heading_offset`` levels (max ``h6``).

    ``skip_sections`` names ``## `` sections (and drops the ``# `` title) that the caller shows elsewhere.
    """
    blocks: list[str] = []
    if skip_sections:
        text = drop_sections(text, skip_sections)
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    paragraph: list[str] = []

    def flush_paragraph() -> None:
        if paragraph:
            blocks.append("<p>" + "<br>".join(inline(p) for p in paragraph) + "</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        heading = _HEADING.match(stripped)
        if not stripped:
            flush_paragraph()
            i += 1
        elif heading:
            flush_paragraph()
            level = min(6, len(heading.group(1)) + heading_offset)
            blocks.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            i += 1
        elif stripped.startswith("|"):
            flush_paragraph()
            table = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                table.append(lines[i])
                i += 1
            blocks.append(_table(table))
        elif stripped.startswith("> "):
            flush_paragraph()
            quoted = []
            while i < len(lines) and lines[i].strip().startswith("> "):
                quoted.append(inline(lines[i].strip()[2:]))
                i += 1
            blocks.append('<p class="md-note">' + "<br>".join(quoted) + "</p>")
        elif stripped.startswith(("- ", "* ")):
            flush_paragraph()
            items = []
            while i < len(lines) and lines[i].strip().startswith(("- ", "* ")):
                items.append(f"<li>{inline(lines[i].strip()[2:])}</li>")
                i += 1
            blocks.append("<ul>" + "".join(items) + "</ul>")
        else:
            paragraph.append(stripped)
            i += 1
    flush_paragraph()
    return Markup("\n".join(blocks))
