"""Charts as inline SVG, drawn on the server (usage analytics, issue 5).

No JavaScript, no CDN, no web font: FAB's chart widgets load Google Charts from
gstatic, which an offline or locked-down back office cannot reach. Every chart is an
``<svg role="img">`` with a ``<title>`` and ``<desc>`` (named by ``aria-labelledby``),
a native tooltip (``<title>``) on every bar, and all text escaped. Pages put a data
table under each chart for screen readers and for copying the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"
AXIS_COLOUR = "#767676"  # 4.5:1 on white
GRID_COLOUR = "#e5e5e5"
TEXT_COLOUR = "#333333"


@dataclass(frozen=True)
class Series:
    """One stacked layer: a label, a colour and one value per category."""

    label: str
    colour: str
    values: Sequence[int]


@dataclass(frozen=True)
class Stage:
    """One funnel bar."""

    label: str
    value: int
    colour: str = "#0072B2"
    base: int | None = None  # its percentage is of this (default: the chart's base)


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 x 10^k at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def axis_ticks(maximum: int, count: int = 4) -> list[int]:
    """Evenly spaced whole-number ticks from 0 up to a round top covering ``maximum``."""
    step = nice_ceiling(max(1, math.ceil(maximum / count)))
    top = step * max(1, math.ceil(maximum / step))
    return list(range(0, top + 1, step))


def _num(value: float) -> str:
    """A coordinate without float noise ("12.5", "40")."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _text(x: float, y: float, content: str, **attrs: str) -> str:
    extra = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return f'<text x="{_num(x)}" y="{_num(y)}"{extra}>{escape(content)}</text>'


def _open_svg(chart_id: str, title: str, desc: str, width: int, height: int) -> list[str]:
    cid = escape(chart_id)
    return [
        f'<svg class="woffice-chart" id="{cid}" role="img" '
        f'aria-labelledby="{cid}-title {cid}-desc" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" '
        f'font-family="{escape(FONT)}" font-size="12" fill="{TEXT_COLOUR}">',
        f'<title id="{cid}-title">{escape(title)}</title>',
        f'<desc id="{cid}-desc">{escape(desc)}</desc>',
    ]


def label_step(count: int, room: int) -> int:
    """Label every n-th category so that at most ``room`` labels are drawn."""
    return max(1, math.ceil(count / max(1, room)))


@dataclass(frozen=True)
class _Plot:
    """The plotting area of a bar chart, in SVG units."""

    left: float
    top: float
    width: float
    height: float
    scale: float  # SVG units per unit of value

    @property
    def bottom(self) -> float:
        return self.top + self.height


def stacked_bar_chart(
    chart_id: str,
    title: str,
    desc: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str = "",
    x_label: str = "",
    width: int = 860,
    height: int = 320,
    empty_text: str = "No data in this period.",
) -> Markup:
    """Vertical bars, one per category, stacked by series in order (first at the bottom),
    with a legend, y-axis ticks and gridlines, and category labels under the bars.

    :raises ValueError: when a series has not one value per category.
    """
    for layer in series:
        if len(layer.values) != len(categories):
            raise ValueError(
                f"series {layer.label!r} has {len(layer.values)} values, expected {len(categories)}"
            )
    left, right, bottom = 56, 12, 48
    legend, legend_y = _legend(series, left, 16, width - right)
    top = legend_y + 18
    totals = [sum(layer.values[i] for layer in series) for i in range(len(categories))]
    ticks = axis_ticks(max(totals, default=0))
    plot_h = height - top - bottom
    plot = _Plot(left, top, width - left - right, plot_h, plot_h / ticks[-1])
    parts = _open_svg(chart_id, title, desc, width, height) + legend
    parts += _y_axis(plot, ticks, y_label)
    parts += _bars(plot, categories, series)
    if x_label:
        parts.append(
            _text(plot.left + plot.width, height - 6, x_label, text_anchor="end", fill=AXIS_COLOUR)
        )
    if not any(totals):
        parts.append(
            _text(
                plot.left + plot.width / 2,
                plot.top + plot.height / 2,
                empty_text,
                text_anchor="middle",
                fill=AXIS_COLOUR,
                font_size="14",
                class_="empty",
            )
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text and attribute is escaped above


def _y_axis(plot: _Plot, ticks: list[int], y_label: str) -> list[str]:
    parts = ['<g class="y-axis">']
    for tick in ticks:
        y = plot.bottom - tick * plot.scale
        parts.append(
            f'<line x1="{_num(plot.left)}" x2="{_num(plot.left + plot.width)}" '
            f'y1="{_num(y)}" y2="{_num(y)}" '
            f'stroke="{GRID_COLOUR if tick else AXIS_COLOUR}" stroke-width="1"/>'
        )
        parts.append(_text(plot.left - 6, y + 4, f"{tick:,}", text_anchor="end", fill=AXIS_COLOUR))
    if y_label:
        middle = plot.top + plot.height / 2
        parts.append(
            _text(
                14,
                middle,
                y_label,
                text_anchor="middle",
                fill=AXIS_COLOUR,
                transform=f"rotate(-90 14 {_num(middle)})",
            )
        )
    parts.append("</g>")
    return parts


def _bars(plot: _Plot, categories: Sequence[str], series: Sequence[Series]) -> list[str]:
    n = len(categories)
    slot = plot.width / max(1, n)
    bar_w = max(1.0, slot * 0.72)
    step = label_step(n, int(plot.width // 56))
    parts: list[str] = []
    for i, category in enumerate(categories):
        x = plot.left + i * slot + (slot - bar_w) / 2
        base = plot.bottom
        parts.append(f'<g class="bar" data-category="{escape(category)}">')
        for layer in series:
            value = layer.values[i]
            if value <= 0:
                continue
            h = value * plot.scale
            base -= h
            parts.append(
                f'<rect x="{_num(x)}" y="{_num(base)}" width="{_num(bar_w)}" height="{_num(h)}" '
                f'fill="{escape(layer.colour)}" data-series="{escape(layer.label)}" '
                f'data-value="{value}"><title>{escape(category)}: {escape(layer.label)} '
                f"{value:,}</title></rect>"
            )
        parts.append("</g>")
        if i % step == 0:
            parts.append(
                _text(
                    x + bar_w / 2,
                    plot.bottom + 18,
                    category,
                    text_anchor="middle",
                    fill=AXIS_COLOUR,
                    class_="x-label",
                )
            )
    return parts


def _legend(
    series: Sequence[Series], left: float, y: float, right: float
) -> tuple[list[str], float]:
    """Swatch + label per series, wrapping onto a new row at ``right``; returns the
    elements and the y of the last row's baseline."""
    parts = ['<g class="legend">']
    x = left
    for layer in series:
        item_w = 17 + 7.2 * len(layer.label)  # roughly the label's width at 12px
        if x > left and x + item_w > right:
            x, y = left, y + 20
        parts.append(
            f'<rect x="{_num(x)}" y="{_num(y - 10)}" width="12" height="12" rx="2" '
            f'fill="{escape(layer.colour)}"/>'
        )
        parts.append(_text(x + 17, y, layer.label))
        x += item_w + 18
    parts.append("</g>")
    return parts, y


def funnel_chart(
    chart_id: str,
    title: str,
    desc: str,
    stages: Sequence[Stage],
    *,
    base: int | None = None,
    width: int = 860,
    bar_height: int = 26,
    gap: int = 8,
) -> Markup:
    """Horizontal bars, one per stage, each as long as its share of the largest value;
    the value and its percentage of ``base`` (default: the first stage; a stage may name
    its own) follow each bar."""
    label_w, value_w = 130, 120
    plot_w = width - label_w - value_w
    height = len(stages) * (bar_height + gap) + gap
    maximum = max((s.value for s in stages), default=0)
    reference = stages[0].value if base is None and stages else (base or 0)
    parts = _open_svg(chart_id, title, desc, width, height)
    for i, stage in enumerate(stages):
        y = gap + i * (bar_height + gap)
        w = plot_w * stage.value / maximum if maximum else 0
        of = reference if stage.base is None else stage.base
        share = f" ({stage.value * 100 / of:.0f}%)" if of else ""
        parts.append(f'<g class="stage" data-stage="{escape(stage.label)}">')
        parts.append(_text(label_w - 8, y + bar_height / 2 + 4, stage.label, text_anchor="end"))
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{_num(plot_w)}" height="{bar_height}" '
            f'fill="#f2f2f2"/>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{_num(w)}" height="{bar_height}" '
            f'fill="{escape(stage.colour)}" data-value="{stage.value}">'
            f"<title>{escape(stage.label)}: {stage.value:,}{escape(share)}</title></rect>"
        )
        parts.append(
            _text(
                label_w + plot_w + 8,
                y + bar_height / 2 + 4,
                f"{stage.value:,}{share}",
                class_="value",
            )
        )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text and attribute is escaped above
