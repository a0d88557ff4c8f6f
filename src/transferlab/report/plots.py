"""Figures drawn off-screen and turned into data URIs, so the HTML needs no other file.

Matplotlib's object API (``Figure`` with its own Agg canvas) needs no pyplot and no
global backend: importing this module changes nothing for a program that also plots.
"""

from __future__ import annotations

import base64
import io

from matplotlib.figure import Figure

DPI = 90


def new_figure(width: float = 6.0, height: float = 4.0, ncols: int = 1, nrows: int = 1):
    figure = Figure(figsize=(width, height), dpi=DPI)
    return figure, figure.subplots(nrows, ncols, squeeze=False)


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def figure_uri(figure) -> str:
    return data_uri(png_bytes(figure))
