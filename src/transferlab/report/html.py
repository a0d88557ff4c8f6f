"""A self-contained HTML page: inline CSS, images as data URIs, no script and no network request."""

from __future__ import annotations

from html import escape
from typing import Any, Callable

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .88rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top;
         overflow-wrap: break-word; max-width: 28rem; }
tr[title] { cursor: help; }
th { background: #f1f3f6; } tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: .5rem; vertical-align: top; }
figure img { max-width: 100%; } figcaption { font-size: .8rem; color: #555; max-width: 40rem; }
.gallery figure { width: 140px; } .gallery figcaption { font-size: .72rem; }
.wrong { color: #b00020; } details { margin: .6rem 0; } summary { cursor: pointer; font-weight: 600; }
.note { color: #666; font-size: .85rem; }
.beside { display: flex; flex-wrap: wrap; align-items: flex-start; }
"""


class Page:
    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def add(self, html: str) -> None:
        self.parts.append(html)

    def heading(self, text: str, anchor: str, level: int = 2) -> None:
        self.add(f'<h{level} id="{escape(anchor)}">{escape(text)}</h{level}>')

    def paragraph(self, text: str, css: str | None = None) -> None:
        self.add(f'<p{f" class={chr(34)}{css}{chr(34)}" if css else ""}>{escape(text)}</p>')

    def table(self, rows: list[dict[str, Any]], columns: list[tuple[str, str]], table_id: str,
              numeric: tuple[str, ...] = (), row_title: Callable[[dict[str, Any]], str] | None = None) -> None:
        """A table in a box of the page's width (a table wider than the page scrolls in it, the page does not);
        ``row_title`` gives each row's tooltip (more of its figures, on hover)."""
        head = "".join(f"<th>{escape(title)}</th>" for _, title in columns)
        body = []
        for row in rows:
            cells = []
            for key, _ in columns:
                value = row.get(key)
                css = f"col-{key}" + (" num" if key in numeric else "")
                cells.append(f'<td class="{css}">{escape("" if value is None else str(value))}</td>')
            ids = f' data-runs="{escape(str(row["run_ids"]))}"' if "run_ids" in row else ""
            title = row_title(row) if row_title else ""
            ids += f' title="{escape(title)}"' if title else ""
            body.append(f"<tr{ids}>{''.join(cells)}</tr>")
        self.add(f'<div class="table-wrap"><table id="{escape(table_id)}"><thead><tr>{head}</tr></thead>'
                 f'<tbody>{"".join(body)}</tbody></table></div>')

    def figure(self, uri: str, caption: str, alt: str | None = None, css: str | None = None) -> None:
        img_class = f' class="{escape(css)}"' if css else ""
        self.add(f'<figure><img src="{uri}"{img_class} alt="{escape(alt or caption)}">'
                 f'<figcaption>{escape(caption)}</figcaption></figure>')

    def open_block(self, block_id: str, css: str | None = None) -> None:
        """A ``div`` holding what follows until ``close_block``, so a reader (or a test) finds a section's parts."""
        self.add(f'<div id="{escape(block_id)}"{f" class={chr(34)}{escape(css)}{chr(34)}" if css else ""}>')

    def close_block(self) -> None:
        self.add("</div>")

    def cards(self, cards, gallery_id: str) -> None:
        """A gallery of ``Card``s in their order: an image, then one captioned line per (css class, text)."""
        items = []
        for card in cards:
            lines = "<br>".join(f'<span class="{escape(css)}">{escape(text)}</span>' for css, text in card.lines)
            items.append(f'<figure><img src="{card.uri}" alt="{escape(card.alt)}" title="{escape(card.path)}">'
                         f'<figcaption>{lines}</figcaption></figure>')
        self.add(f'<div class="gallery" id="{escape(gallery_id)}">{"".join(items)}</div>')

    def open_details(self, summary: str, open_: bool = False) -> None:
        self.add(f"<details{' open' if open_ else ''}><summary>{escape(summary)}</summary>")

    def close_details(self) -> None:
        self.add("</details>")

    def gallery(self, thumbnails) -> None:
        items = [
            f'<figure><img src="{t.uri}" alt="true {escape(t.true)}, predicted {escape(t.predicted)}" title="{escape(t.path)}">'
            f'<figcaption>true: {escape(t.true)}<br><span class="wrong">predicted: {escape(t.predicted)}</span></figcaption></figure>'
            for t in thumbnails
        ]
        self.add(f'<div class="gallery">{"".join(items)}</div>')

    def render(self) -> str:
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{escape(self.title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{escape(self.title)}</h1>\n" + "\n".join(self.parts) + "\n</body></html>\n"
        )
