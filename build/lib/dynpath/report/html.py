"""One report document, two renderings: a self-contained HTML page and its Markdown twin.

The report is built once as a small document tree (sections of paragraphs, alerts, tables and
images) and rendered twice, so the HTML and the Markdown cannot drift apart.

Self-contained means the HTML page loads nothing: images are inlined as base64 ``data:`` URIs and
the stylesheet is inline, no script at all. It opens offline, survives being mailed or attached
to a paper's supplementary material, and cannot leak a reader's IP to a CDN. (``dvc plots show``
pages load Vega from a CDN; this page does not.) The Markdown twin references the PNG files next
to it (``plots/*.png``) because Markdown viewers handle relative images well and data URIs badly.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

BlockKind = Literal["text", "alert", "ok", "table", "image"]


@dataclass
class Block:
    """One piece of a section. ``links`` maps a table column to one URL (or None) per row."""

    kind: BlockKind
    text: str = ""
    table: pd.DataFrame | None = None
    image: Path | None = None
    links: Mapping[str, Sequence[str | None]] = field(default_factory=dict)
    digits: int = 2


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def text(self, text: str) -> Section:
        self.blocks.append(Block("text", text=text))
        return self

    def alert(self, text: str) -> Section:
        self.blocks.append(Block("alert", text=text))
        return self

    def ok(self, text: str) -> Section:
        self.blocks.append(Block("ok", text=text))
        return self

    def table(
        self,
        df: pd.DataFrame,
        caption: str = "",
        links: Mapping[str, Sequence[str | None]] | None = None,
        digits: int = 2,
    ) -> Section:
        self.blocks.append(Block("table", text=caption, table=df, links=links or {}, digits=digits))
        return self

    def image(self, path: Path, caption: str) -> Section:
        self.blocks.append(Block("image", text=caption, image=path))
        return self


@dataclass
class Document:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        s = Section(title)
        self.sections.append(s)
        return s


def format_cell(value: Any, digits: int = 2) -> str:
    """Numbers with fixed decimals (ints as ints), missing values as a dash, never 'nan'."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,d}"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,d}"
        return f"{value:.{digits}f}"
    try:
        if pd.isna(value):
            return "–"
    except (TypeError, ValueError):
        pass
    return str(value)


def _cells(df: pd.DataFrame, digits: int) -> pd.DataFrame:
    """Cell-by-cell strings; object dtype so ints in float columns are formatted per cell."""
    return pd.DataFrame(
        {c: [format_cell(v, digits) for v in df[c].astype(object)] for c in df.columns},
        columns=list(df.columns),
        dtype=object,
    )


# --------------------------------------------------------------------------- HTML

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.8em}.subtitle{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
caption{caption-side:top;text-align:left;color:#555;padding-bottom:.3em}
.alert{background:#fff1f0;border-left:5px solid #d93025;padding:.6em 1em;margin:1em 0}
.ok{background:#eef8ee;border-left:5px solid #2e7d32;padding:.6em 1em;margin:1em 0}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}img{max-width:100%}
code{background:#f5f5f5;padding:0 .2em}
"""


def _html_table(block: Block, number: int) -> str:
    """pandas ``to_html`` of the formatted cells; text columns left-aligned by a scoped rule."""
    assert block.table is not None
    cells = _cells(block.table, block.digits).map(html.escape)
    for column, urls in block.links.items():
        if column in cells.columns:
            cells[column] = [
                f'<a href="{html.escape(u, quote=True)}">{text}</a>' if u else text
                for text, u in zip(cells[column], urls, strict=True)
            ]
    cells.columns = [html.escape(str(c)) for c in cells.columns]
    cls = f"t{number}"
    table = cells.to_html(index=False, escape=False, border=0, classes=cls)
    if block.text:
        table = table.replace(">", f"><caption>{html.escape(block.text)}</caption>", 1)
    text_cols = [
        i + 1
        for i, c in enumerate(block.table.columns)
        if not pd.api.types.is_numeric_dtype(block.table[c])
    ]
    rules = "".join(
        f".{cls} td:nth-child({i}),.{cls} th:nth-child({i}){{text-align:left}}" for i in text_cols
    )
    return (f"<style>{rules}</style>\n" if rules else "") + table


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(doc: Document) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(doc.title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    if doc.subtitle:
        parts.append(f'<p class="subtitle">{html.escape(doc.subtitle)}</p>')
    tables = 0
    for section in doc.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for b in section.blocks:
            if b.kind == "text":
                parts.append(f"<p>{html.escape(b.text)}</p>")
            elif b.kind in ("alert", "ok"):
                parts.append(f'<div class="{b.kind}">{html.escape(b.text)}</div>')
            elif b.kind == "table":
                tables += 1
                parts.append(_html_table(b, tables))
            elif b.kind == "image" and b.image is not None:
                parts.append(
                    f'<figure><img alt="{html.escape(b.text, quote=True)}" '
                    f'src="{_data_uri(b.image)}"><figcaption>{html.escape(b.text)}'
                    "</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(block: Block) -> str:
    assert block.table is not None
    cells = _cells(block.table, block.digits).map(_md_escape)
    for column, urls in block.links.items():
        if column in cells.columns:
            cells[column] = [
                f"[{text}]({u})" if u else text for text, u in zip(cells[column], urls, strict=True)
            ]
    align = [
        "right" if pd.api.types.is_numeric_dtype(block.table[c]) else "left"
        for c in block.table.columns
    ]
    body = (
        cells.to_markdown(index=False, disable_numparse=True, colalign=align)
        if len(cells.columns)
        else ""
    )
    return (f"*{block.text}*\n\n" if block.text else "") + body


def render_markdown(doc: Document, relative_to: Path) -> str:
    """Markdown twin; images are linked relative to ``relative_to`` (the Markdown file's dir)."""
    parts = [f"# {doc.title}"]
    if doc.subtitle:
        parts.append(f"_{doc.subtitle}_")
    for section in doc.sections:
        parts.append(f"## {section.title}")
        for b in section.blocks:
            if b.kind == "text":
                parts.append(b.text)
            elif b.kind == "alert":
                parts.append(f"> **Warning:** {b.text}")
            elif b.kind == "ok":
                parts.append(f"> {b.text}")
            elif b.kind == "table":
                parts.append(_md_table(b))
            elif b.kind == "image" and b.image is not None:
                rel = b.image.resolve().relative_to(relative_to.resolve()).as_posix()
                parts.append(f"![{b.text}]({rel})\n\n*{b.text}*")
    return "\n\n".join(parts) + "\n"
