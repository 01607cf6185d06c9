"""The report's HTML: one self-contained page (inline CSS, figures as PNG data URIs, no scripts, no fonts or
files from elsewhere) and the small helpers sections build their fragments with (tables, figures, notes).
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display on servers; every figure becomes a PNG
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from hydranet.files import figure_png  # noqa: E402

FIGURE_SIZE = (4.6, 3.2)  # inches at DPI: 460×320 px, two figures side by side in the 1100 px column
DPI = 100

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --accent: #2f6fb0; --soft: #f5f7fa; --warn: #9a5b00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 64px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; color: var(--muted); }
nav { margin: 18px 0 8px; padding: 10px 14px; background: var(--soft); border-radius: 6px; }
nav a { display: inline-block; margin: 2px 14px 2px 0; color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
details { border-top: 1px solid var(--line); padding: 6px 0 10px; }
summary { cursor: pointer; font-size: 19px; font-weight: 600; padding: 6px 0; }
summary.sub { font-size: 14px; font-weight: 500; color: var(--accent); }
details details { border: 0; padding: 0; }
h3 { font-size: 15.5px; margin: 18px 0 6px; color: #3e4c59; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 9px; white-space: nowrap; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; }
td.wrap { white-space: normal; min-width: 26em; max-width: 44em; }
.scroll { overflow-x: auto; max-width: 100%; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 4px 0; }
figure img { display: block; max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 2px; }
.note { color: var(--warn); background: #fff8eb; border-left: 3px solid var(--warn); padding: 6px 10px; }
.muted { color: var(--muted); }
pre { background: var(--soft); padding: 10px 12px; border-radius: 6px; overflow-x: auto; font-size: 12.5px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; }
.thumb { width: 116px; font-size: 12px; text-align: center; }
.tokens span { padding: 1px 3px; border-radius: 3px; line-height: 2; }
.thumb img { width: 96px; height: 96px; image-rendering: pixelated; border: 1px solid var(--line); }
"""


@dataclass
class Section:
    """One rendered section: its anchor id, title and HTML body."""

    id: str
    title: str
    body: str


def escape(value: Any) -> str:
    return html.escape(str(value))


def number(value: Any) -> str:
    """A table cell's text: floats to 4 significant digits, None/NaN as an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], show_header: bool = True) -> str:
    """An HTML table; numbers are right-aligned and shortened by `number`."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header) if show_header else ""
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    head = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f'<div class="scroll"><table>{head}<tbody>{body}</tbody></table></div>'


WRAPPED = 60  # characters: a longer text cell (a text run's texts) wraps instead of widening its table


def _cell(value: Any) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric:
        return f'<td class="num">{escape(number(value))}</td>'
    wrap = ' class="wrap"' if isinstance(value, str) and len(value) > WRAPPED else ""
    return f"<td{wrap}>{escape(number(value))}</td>"


def note(text: str) -> str:
    """A visible remark: what is missing or could not be read, instead of a crash."""
    return f'<p class="note">{escape(text)}</p>'


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def new_figure(columns: int = 1, size: tuple[float, float] = FIGURE_SIZE) -> tuple[Any, Any]:
    """A figure of the report's standard size (wider by `columns` panels) and its axes."""
    figure, axes = plt.subplots(1, columns, figsize=(size[0] * columns, size[1]), dpi=DPI)
    return figure, axes


def epoch_axis(ax: Any) -> None:
    """Whole-number epoch ticks (matplotlib would put ticks at 1.5 on a short run)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def figure(fig: Any, caption: str = "", alt: str = "") -> str:
    """A matplotlib figure as an inline PNG <figure>; the figure is closed."""
    fig.tight_layout()
    data = figure_png(fig, DPI)
    plt.close(fig)
    return image(data, caption, alt or caption)


def image(data: bytes, caption: str = "", alt: str = "", width: int | None = None) -> str:
    """PNG bytes as an inline <figure>; `width` (CSS pixels) shrinks a large PNG drawn elsewhere (Optuna's)."""
    text = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    size = f' style="width: {width}px"' if width else ""
    return f'<figure><img src="{png_uri(data)}" alt="{escape(alt)}"{size}>{text}</figure>'


def figures(parts: Iterable[str]) -> str:
    """Figures side by side, wrapping on narrow windows."""
    return '<div class="figures">' + "".join(parts) + "</div>"


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: header, table of contents, one collapsible, anchored block per section."""
    toc = "".join(f'<a href="#{s.id}">{escape(s.title)}</a>' for s in sections)
    blocks = "".join(f'<details open id="{s.id}"><summary>{escape(s.title)}</summary>{s.body}</details>'
                     for s in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
            f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>"
            f"<nav>{toc}</nav>{blocks}</main></body></html>\n")


def image_thumbnail(pixels: Any) -> str:
    """An image tensor (C, H, W), uint8 pixels or floats of any range, as an inline PNG <img> (gray for one
    channel); floats are stretched to their own min..max, which is all a thumbnail needs."""
    array = pixels.float().numpy().transpose(1, 2, 0)
    low, high = float(array.min()), float(array.max())
    array = (array - low) / (high - low) if high > low else array * 0
    buffer = io.BytesIO()
    if array.shape[2] == 1:
        plt.imsave(buffer, array[:, :, 0], cmap="gray", vmin=0, vmax=1, format="png")
    else:
        plt.imsave(buffer, array[:, :, :3], format="png")
    return f'<img src="{png_uri(buffer.getvalue())}" alt="test example">'


def series(values: Iterable[Any]) -> Any:
    """Plot values with None (an epoch or point without the number) as NaN, a gap in the line."""
    return np.array([np.nan if v is None else float(v) for v in values])
