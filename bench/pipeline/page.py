"""The release as one self-contained HTML page: the index's Markdown with every image inline.

:func:`markdown_page` turns the Markdown that :mod:`bench.pipeline.release` writes into one HTML file that can
be mailed or attached to a release ticket: images become ``data:image/png;base64`` URIs, so the page needs no
other file. It renders the subset of Markdown the index uses -- ``#`` headings, paragraphs, ``- `` lists,
pipe tables, images and links, ``**bold**``, `` `code` `` and backslash escapes (:func:`bench.tables.md_escape`)
-- and nothing more; any other line is a paragraph of escaped text. Links to files of the release folder stay
relative (they work beside the folder; the page says so).

Strings in the index come partly from files a user or a phone hands over (model names, gate messages, the
device's getprop answers), so the page trusts no path or link in it: only image files inside the release folder
are inlined, and links keep only relative paths inside the folder, ``#`` anchors and ``http(s)`` addresses.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_INLINE = re.compile(r"\\(?P<esc>.)|`(?P<code>[^`]+)`|!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)"
                     r"|\[(?P<text>[^\]]+)\]\((?P<href>[^)\s]+)\)|\*\*(?P<bold>.+?)\*\*")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_STYLE = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}th{background:#f2f2f2}
code{background:#f4f4f4;padding:0 .2em}img{max-width:100%}h1,h2{border-bottom:1px solid #ddd}
.note{color:#666;font-size:.9em}"""


_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".svg": "image/svg+xml"}
_SAFE_SCHEME = re.compile(r"^(https?://|#)", re.I)


def _inside(folder: Path, ref: str) -> Path | None:
    """``folder / ref`` resolved, when ``ref`` is a relative path that stays inside ``folder``; else None."""
    if not ref or ref.startswith(("/", "\\")) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", ref):
        return None
    root = folder.resolve()
    path = (root / ref).resolve()
    return path if path.is_relative_to(root) else None


def _data_uri(folder: Path, ref: str) -> str | None:
    """``data:<type>;base64,...`` of the image ``ref`` (relative to ``folder``), or None when it is not an image
    file inside ``folder`` (absolute paths, ``..`` out of the folder, symlinks out of it and non-images refused)."""
    path = _inside(folder, ref)
    if path is None or not path.is_file() or path.suffix.lower() not in _IMAGE_TYPES:
        return None
    return f"data:{_IMAGE_TYPES[path.suffix.lower()]};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _safe_href(folder: Path, ref: str) -> str | None:
    """``ref`` when it is an ``http(s)`` address, an anchor or a relative path inside ``folder``; else None."""
    if _SAFE_SCHEME.match(ref) or _inside(folder, ref.split("#", 1)[0]) is not None:
        return ref
    return None


def inline_html(text: str, folder: Path) -> str:
    """One line of Markdown inline syntax -> HTML; images inside ``folder`` are inlined as data URIs, any other
    image reference is shown as text, and a link that is not safe (module docstring) loses its ``href``."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        pos = m.end()
        if m.group("esc") is not None:
            out.append(html.escape(m.group("esc")))
        elif m.group("code") is not None:
            out.append(f"<code>{html.escape(m.group('code'))}</code>")
        elif m.group("src") is not None:
            src = _data_uri(folder, m.group("src"))
            if src is None:  # not an image of the release: shown as text, never fetched
                out.append(html.escape(m.group(0)))
            else:
                out.append(f'<img alt="{html.escape(m.group("alt"))}" src="{html.escape(src)}">')
        elif m.group("href") is not None:
            href = _safe_href(folder, m.group("href"))
            text = inline_html(m.group("text"), folder)
            out.append(f'<a href="{html.escape(href)}">{text}</a>' if href is not None
                       else f"{text} ({html.escape(m.group('href'))})")
        else:
            out.append(f"<strong>{inline_html(m.group('bold'), folder)}</strong>")
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in _CELL_SPLIT.split(line.strip().strip("|"))]


def markdown_page(markdown: str, folder: str | Path, title: str) -> str:
    """The HTML page of ``markdown`` (module docstring); ``folder`` is where its relative images are."""
    folder = Path(folder)
    body: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"^(#{1,6})\s+(.*)$", line):
            n = len(m.group(1))
            body.append(f"<h{n}>{inline_html(m.group(2), folder)}</h{n}>")
            i += 1
        elif line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            rows = [r for r in block if not re.match(r"^\s*\|[\s:|-]+\|\s*$", r)]
            head, rest = rows[0], rows[1:]
            body.append("<table><thead><tr>" + "".join(f"<th>{inline_html(c, folder)}</th>" for c in _cells(head))
                        + "</tr></thead><tbody>")
            body += ["<tr>" + "".join(f"<td>{inline_html(c, folder)}</td>" for c in _cells(r)) + "</tr>" for r in rest]
            body.append("</tbody></table>")
        elif line.startswith("- "):
            body.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                body.append(f"<li>{inline_html(lines[i][2:], folder)}</li>")
                i += 1
            body.append("</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#{1,6}\s|\||- )", lines[i].lstrip()):
                para.append(inline_html(lines[i], folder))
                i += 1
            body.append("<p>" + "<br>\n".join(para) + "</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(body)
            + "\n<p class=\"note\">Images are part of this page. Links name files of the release folder and work "
              "beside it.</p>\n</body></html>\n")
