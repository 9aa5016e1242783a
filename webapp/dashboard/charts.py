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
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup

from webapp.usage.queries import GroupRow, SeriesPoint

PALETTE = ("#3457d5", "#067647", "#b54708", "#7a2e9e", "#0e7490", "#b42318", "#4b5563", "#a16207")
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


def _html(figure: dict[str, Any], element_id: str) -> str:
    # A fresh id per render: htmx "settles" a swapped element by restoring the attributes of the old element
    # with the same id, which would strip the class Plotly puts on its chart and break the chart's layering.
    payload = json.dumps(figure | {"config": CONFIG}, separators=(",", ":"))
    return str(
        Markup('<div id="{}" class="plotly-graph-div chart-plot" data-plotly-figure="{}"></div>').format(
            f"{element_id}-{secrets.randbelow(10**9)}", payload
        )
    )


def series_chart(points: Sequence[SeriesPoint], metric: str, title: str, element_id: str) -> str:
    x = [point.bucket.isoformat() for point in points]
    y = [float(getattr(point.totals, metric)) for point in points]
    trace = {"type": "bar", "x": x, "y": y, "marker": {"color": PALETTE[0]}, "name": title}
    layout = BASE_LAYOUT | {"title": {"text": title, "x": 0, "font": {"size": 14}}}
    return _html({"data": [trace], "layout": layout}, element_id)


def breakdown_chart(
    rows: Sequence[GroupRow], title: str, element_id: str, limit: int = 8, axis_title: str = "price"
) -> str:
    """Groups by what tenants pay (`price`): tenants never see LiteLLM's cost, staff see revenue."""
    shown = list(rows[:limit])[::-1]
    trace = {
        "type": "bar",
        "orientation": "h",
        "x": [float(row.totals.price) for row in shown],
        "y": [plain_label(row.label) for row in shown],
        "marker": {"color": [PALETTE[index % len(PALETTE)] for index in range(len(shown))]},
        "hovertemplate": "%{y}: %{x:.4f}<extra></extra>",
    }
    layout = BASE_LAYOUT | {
        "title": {"text": title, "x": 0, "font": {"size": 14}},
        "margin": {"l": 140, "r": 16, "t": 36, "b": 40},
        "xaxis": {"gridcolor": "#e3e6ee", "title": {"text": axis_title}},
        "yaxis": {"automargin": True, "type": "category"},
    }
    return _html({"data": [trace], "layout": layout}, element_id)
