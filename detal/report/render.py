"""One report, two renderings: a list of blocks becomes Markdown (figures linked as PNG files beside it)
and self-contained HTML (figures embedded as base64 PNG, inline CSS, no script, nothing fetched).

Text in blocks is plain, with `code` spans and **bold** as the only markup; both renderers understand it.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str
    style: str = ""  # css class: note, small


@dataclass(frozen=True)
class Bullets:
    items: list  # [(css class of the item, text)]
    style: str = ""  # css class of the list: verdicts, notes


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    align_left: int = 1  # the first n columns are text; the rest are numbers, right-aligned


@dataclass(frozen=True)
class Image:
    name: str  # file name of the PNG beside the report
    png: bytes = field(repr=False)
    alt: str = ""
    caption: str = ""


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _cell_md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(blocks: list) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            out += [f"_{b.text}_" if b.style == "small" else b.text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {text}" for _, text in b.items] + [""]
        elif isinstance(b, Table):
            out.append("| " + " | ".join(_cell_md(c) for c in b.columns) + " |")
            out.append("|" + "".join("---|" if i < b.align_left else "--:|" for i in range(len(b.columns))))
            out += ["| " + " | ".join(_cell_md(c) for c in r) + " |" for r in b.rows]
            out.append("")
        elif isinstance(b, Image):
            out += [f"![{b.alt}]({b.name})", ""]
            if b.caption:
                out += [f"_{b.caption}_", ""]
    return "\n".join(out)


CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1a1a1a;
       margin: 0; background: #f6f6f4; }
main { max-width: 1140px; margin: 0 auto; padding: 24px 20px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 6px; } h2 { font-size: 21px; margin: 34px 0 10px; border-bottom: 1px solid #ddd; }
h3 { font-size: 17px; margin: 26px 0 8px; }
code { font: 13px ui-monospace, "DejaVu Sans Mono", monospace; background: #f0f0ee; padding: 1px 4px;
       border-radius: 3px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e4e4e4; vertical-align: top; }
th { background: #f3f3f1; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafaf9; }
.scroll { overflow-x: auto; }
ul.verdicts { list-style: none; padding: 0; margin: 8px 0; }
ul.verdicts li { margin: 8px 0; padding: 10px 14px; border-left: 6px solid #9e9e9e; background: #f5f5f5; }
li.gain { border-color: #2e7d32 !important; background: #edf6ee !important; }
li.loss { border-color: #c62828 !important; background: #fbeeee !important; }
li.nothing-learned { border-color: #ef6c00 !important; background: #fff4e5 !important; }
figure { margin: 14px 0 22px; } figure img { max-width: 100%; height: auto; display: block; }
figcaption, p.small { color: #555; font-size: 13.5px; }
p.note, ul.notes li { color: #6d4c00; }
"""


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{_inline_html(c)}</th>" for c in t.columns)
    rows = []
    for r in t.rows:
        cells = "".join(("<td>" if i < t.align_left else '<td class="num">') + f"{_inline_html(str(c))}</td>"
                        for i, c in enumerate(r))
        rows.append(f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            "</div>")


def to_html(blocks: list, title: str) -> str:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            cls = f' class="{b.style}"' if b.style else ""
            body.append(f"<p{cls}>{_inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            cls = f' class="{b.style}"' if b.style else ""
            items = "".join(f'<li class="{k}">{_inline_html(t)}</li>' for k, t in b.items)
            body.append(f"<ul{cls}>{items}</ul>")
        elif isinstance(b, Table):
            body.append(_table_html(b))
        elif isinstance(b, Image):
            data = base64.b64encode(b.png).decode("ascii")
            cap = f"<figcaption>{_inline_html(b.caption)}</figcaption>" if b.caption else ""
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}">{cap}</figure>')
    # data: favicon: a page opened from disk asks for /favicon.ico otherwise
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><link rel=\"icon\" href=\"data:,\"><style>{CSS}</style></head>\n"
            "<body><main>\n" + "\n".join(body) + "\n</main></body></html>\n")
