"""Plotly figures built server-side as plain figure dicts (no per-trace validation: ~1 ms each).

A chart is an empty element carrying its figure as JSON in `data-plotly-figure`; static/js/dashboard.js draws
it (the page's CSP allows no inline scripts). Plotly renders a subset of HTML in text (`<a href>`, `<b>`,
`<br>`...) and decodes entities, so every label that comes from a user or from LiteLLM (key, tenant and
model names) is entity-escaped and shows as the literal text.
"""

from __future__ import annotations

import html
import json
import secrets
import zlib
from collections.abc import Sequence
from typing import Any

from flask_babel import gettext as _
from markupsafe import Markup

from webapp import formatting
from webapp.usage.queries import GroupRow, SeriesPoint

# Colours by name (model, key, tenant), not by rank: a model keeps its colour in every chart and view.
PALETTE = (
    "#3457d5", "#067647", "#b54708", "#7a2e9e", "#0e7490", "#b42318",
    "#4b5563", "#a16207", "#be185d", "#15803d", "#1d4ed8", "#9a3412",
)  # fmt: skip
LABEL_CHARS = 22
CONFIG = {"displaylogo": False, "responsive": True, "displayModeBar": False}
BASE_LAYOUT: dict[str, Any] = {
    "height": 260,
    "margin": {"l": 56, "r": 16, "t": 36, "b": 40},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "font": {"family": "system-ui, sans-serif", "size": 12, "color": "#1c2333"},
    "xaxis": {"gridcolor": "#e3e6ee"},
    "yaxis": {"gridcolor": "#e3e6ee", "rangemode": "tozero"},
}


def plain_label(text: str) -> str:
    """Text Plotly shows as-is: its pseudo-HTML tags become visible characters, never links or markup."""
    return html.escape(text, quote=False)


def colour_for(name: str) -> str:
    """The same colour for the same name in every chart (crc32: stable across processes, unlike hash())."""
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def _layout(**extra: Any) -> dict[str, Any]:
    return BASE_LAYOUT | {"separators": formatting.plotly_separators()} | extra


def _html(figure: dict[str, Any], element_id: str) -> str:
    # A fresh id per render: htmx "settles" a swapped element by restoring the attributes of the old element
    # with the same id, which would strip the class Plotly puts on its chart and break the chart's layering.
    payload = json.dumps(figure | {"config": CONFIG}, separators=(",", ":"))
    return str(
        Markup('<div id="{}" class="plotly-graph-div chart-plot" data-plotly-figure="{}"></div>').format(
            f"{element_id}-{secrets.randbelow(10**9)}", payload
        )
    )


def empty_chart(title: str, element_id: str) -> str:
    """No axes without data (Plotly would draw a -1..4 grid): the title and a sentence instead."""
    template = Markup('<div id="{}" class="chart-empty" role="status"><p class="chart-empty-title">{}</p>{}</div>')
    message = Markup('<p class="muted">{}</p>').format(_("No usage in this period."))
    return str(template.format(element_id, title, message))


def _value_axis(values: list[float], currency: str | None) -> tuple[dict[str, Any], str]:
    """Axis settings and the hover number: money by the one money rule, counts with separators, never SI."""
    if currency is None:
        return {"tickformat": ",~r", "exponentformat": "none"}, "%{VALUE:,}"
    axis = formatting.plotly_money_axis(values, currency)
    number = "%{VALUE:" + axis["tickformat"] + "}"
    return axis, axis.get("tickprefix", "") + number + axis.get("ticksuffix", "")


def series_chart(
    points: Sequence[SeriesPoint], metric: str, title: str, element_id: str, currency: str | None = None
) -> str:
    y = [float(getattr(point.totals, metric)) for point in points]
    if not any(y):
        return empty_chart(title, element_id)
    x = [point.bucket.isoformat() for point in points]
    axis, hover = _value_axis(y, currency)
    trace = {
        "type": "bar",
        "x": x,
        "y": y,
        "marker": {"color": PALETTE[0]},
        "name": title,
        "hovertemplate": "%{x}: " + hover.replace("VALUE", "y") + "<extra></extra>",
    }
    layout = _layout(
        title={"text": plain_label(title), "x": 0, "font": {"size": 14}},
        yaxis=BASE_LAYOUT["yaxis"] | axis,
    )
    return _html({"data": [trace], "layout": layout}, element_id)


def _short_ticks(labels: list[str]) -> dict[str, Any]:
    """Long names (120 characters) would squeeze the bars to nothing: ticks show the start, hover the whole."""
    short = [label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…" for label in labels]
    escaped = [plain_label(label) for label in labels]
    return {"tickmode": "array", "tickvals": escaped, "ticktext": [plain_label(label) for label in short]}


def breakdown_chart(
    rows: Sequence[GroupRow],
    title: str,
    element_id: str,
    limit: int = 8,
    axis_title: str = "price",
    currency: str = "USD",
) -> str:
    """Groups by what tenants pay (`price`): tenants never see LiteLLM's cost, staff see revenue."""
    shown = [row for row in rows[:limit] if row.totals.price or row.totals.requests][::-1]
    if not shown:
        return empty_chart(title, element_id)
    x = [float(row.totals.price) for row in shown]
    axis, hover = _value_axis(x, currency)
    trace = {
        "type": "bar",
        "orientation": "h",
        "x": x,
        "y": [plain_label(row.label) for row in shown],
        "marker": {"color": [colour_for(str(row.key or row.label)) for row in shown]},
        "hovertemplate": "%{y}: " + hover.replace("VALUE", "x") + "<extra></extra>",
    }
    layout = _layout(
        title={"text": plain_label(title), "x": 0, "font": {"size": 14}},
        margin={"l": 140, "r": 16, "t": 36, "b": 40},
        xaxis={"gridcolor": "#e3e6ee", "title": {"text": plain_label(axis_title)}} | axis,
        yaxis={"automargin": True, "type": "category", **_short_ticks([row.label for row in shown])},
    )
    return _html({"data": [trace], "layout": layout}, element_id)
