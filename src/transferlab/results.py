"""Result records and how they are shown: a table for people, plain JSON for programs."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table


def to_json(record: Any, **exclude: bool) -> str:
    data = dataclasses.asdict(record)
    for key, drop in exclude.items():
        if drop:
            data.pop(key, None)
    return json.dumps(data, indent=2, default=str)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, rows: list[tuple[str, Any]], console: Console | None = None) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, _fmt(value))
    (console or Console(emoji=False, width=None if sys.stdout.isatty() else 120)).print(table)
