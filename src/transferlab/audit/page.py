"""A self-contained HTML page of an audit's suspects: thumbnails embedded as data URIs, every name escaped."""

from __future__ import annotations

from html import escape
from pathlib import Path

from ..storage import atomic_write_text
from .run import AuditResult

STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
         "padding:4px;vertical-align:top}img{max-width:128px;max-height:128px}")


def _thumbnail(path: str) -> str:
    from PIL import Image

    from ..report.gallery import thumbnail_uri

    try:
        with Image.open(path) as image:
            uri = thumbnail_uri(image.convert("RGB"))
    except OSError:
        return "(unreadable)"
    return f'<img src="{uri}" alt="{escape(Path(path).name)}">'


def audit_page(result: AuditResult, limit: int = 200) -> str:
    """The page's HTML: label issues, duplicate pairs (cross-split first) and class overlap."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>audit of {escape(result.data)}</title>"
             f"<style>{STYLE}</style></head><body><h1>Data audit of {escape(result.data)}</h1>",
             f"<p>{len(result.paths)} images, out-of-fold probe accuracy {result.out_of_fold_accuracy:.4f}; "
             f"{len(result.label_issues)} suspected label issue(s), {len(result.duplicates)} near-duplicate "
             f"pair(s).</p>", "<h2>Suspected label issues (lowest self-confidence first)</h2><table>"
             "<tr><th>image</th><th>path</th><th>split</th><th>given</th><th>suggested</th>"
             "<th>self-confidence</th></tr>"]
    for row in result.issue_rows()[:limit]:
        parts.append(f"<tr><td>{_thumbnail(row['path'])}</td><td>{escape(row['path'])}</td>"
                     f"<td>{escape(row['split'])}</td><td>{escape(row['given'])}</td>"
                     f"<td>{escape(row['suggested'])}</td><td>{row['self_confidence']:.3f}</td></tr>")
    parts.append("</table><h2>Near-duplicate pairs</h2><table><tr><th>first</th><th>second</th><th>splits</th>"
                 "<th>cosine</th><th>hash distance</th></tr>")
    rows = sorted(result.duplicate_rows(), key=lambda r: not r["cross_split"])
    for row in rows[:limit]:
        where = " / ".join(row["splits"]) + (" (across splits: a leak)" if row["cross_split"] else "")
        parts.append(f"<tr><td>{_thumbnail(row['first'])}<br>{escape(row['first'])}</td>"
                     f"<td>{_thumbnail(row['second'])}<br>{escape(row['second'])}</td><td>{escape(where)}</td>"
                     f"<td>{row['cosine']:.3f}</td><td>{row['hash_distance']}"
                     f"{' (same file)' if row['exact'] else ''}</td></tr>")
    parts.append("</table><h2>Most confused class pairs</h2><table><tr><th>classes</th><th>confused</th>"
                 "<th>share of their images</th></tr>")
    for pair in result.overlap:
        parts.append(f"<tr><td>{escape(' / '.join(pair['classes']))}</td><td>{pair['confused']}</td>"
                     f"<td>{pair['share']:.3f}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write_audit_page(result: AuditResult, target: Path) -> None:
    atomic_write_text(target, audit_page(result))
