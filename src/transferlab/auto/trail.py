"""The decision trail of an ``auto`` run: every step (scored, probed, dropped, tried, pruned, stopped) with its
time and its reason, as JSON and as a Markdown / HTML report section."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any

from .budget import Budget


class Trail:
    """Events of one worker, each stamped with seconds since the worker started and the UTC time."""

    def __init__(self, budget: Budget, worker: str = ""):
        self.budget = budget
        self.worker = worker
        self.events: list[dict[str, Any]] = []
        self.said: set[str] = set()  # notes already in the trail

    def add(self, step: str, what: str, why: str = "", **details: Any) -> dict[str, Any]:
        event = {"t": round(self.budget.elapsed, 3), "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "step": step, "what": what, "why": why, **details}
        self.events.append(event)
        return event


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value).replace("|", "/")


def trail_markdown(record: dict[str, Any]) -> str:
    """The report section: the winner, each worker's steps, and every trial of the study."""
    lines = ["## Decision trail (transferlab auto)", ""]
    winner = record.get("winner")
    lines.append(f"Study `{record['study']}`: budget {record['budget_seconds']:.0f}s per worker; this worker stopped "
                 f"after {record['elapsed_seconds']:.1f}s ({record['stop_reason']}).")
    if winner:
        lines.append(f"Winner: trial {winner['trial']} ({winner['backbone']}, freeze {winner['freeze']}, lr "
                     f"{winner['lr']:.2g}): validation accuracy {winner['val_accuracy']:.4f}, test accuracy "
                     f"{_cell(winner.get('test_accuracy'))}; bundle `{winner.get('bundle') or '-'}`.")
    for worker, events in record.get("workers", {}).items():
        lines += ["", f"### Steps of worker {worker}", "", "| t (s) | step | what | why |", "|---|---|---|---|"]
        lines += [f"| {e['t']:.1f} | {e['step']} | {_cell(e['what'])} | {_cell(e['why'])} |" for e in events]
    lines += ["", "### Trials of the study", "", "| trial | state | backbone | freeze | lr | epochs | val accuracy | "
              "test accuracy | seconds | why |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in record.get("trials", []):
        lines.append(f"| {t['number']} | {t['state']} | {t['backbone']} | {t['freeze']} | {_cell(t['lr'])} | "
                     f"{t['epochs']} | {_cell(t['value'])} | {_cell(t.get('test_accuracy'))} | {_cell(t['seconds'])} | "
                     f"{_cell(t.get('reason'))} |")
    return "\n".join(lines) + "\n"


def trail_html(record: dict[str, Any]) -> str:
    """The same section as a standalone HTML page (tables, no scripts)."""
    out = ["<!doctype html><meta charset='utf-8'><title>transferlab auto</title>",
           "<style>body{font-family:sans-serif;max-width:70em}td,th{padding:2px 8px;border-bottom:1px solid #ddd;"
           "text-align:left}</style>"]
    block: list[str] = []
    for line in trail_markdown(record).splitlines():
        if line.startswith("|"):
            if set(line) <= set("|-"):
                continue
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            tag = "th" if not block else "td"
            block.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            continue
        if block:
            out.append("<table>" + "".join(block) + "</table>")
            block = []
        if line.startswith("### "):
            out.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if block:
        out.append("<table>" + "".join(block) + "</table>")
    return "\n".join(out) + "\n"
