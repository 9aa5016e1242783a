"""Dashboard pages. Each URL serves its full page and, for HTMX requests, the fragment named by HX-Target."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import plotly
from flask import Response, abort, current_app, make_response, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from werkzeug.routing import BuildError

from webapp import replica
from webapp.auth.decorators import staff_required, tenant_user_required
from webapp.dashboard import bp, console, explorer, exports, live, service
from webapp.dashboard.params import DashboardParams, ExplorerParams, explorer_params, field_label, parse_params
from webapp.errors import json_error
from webapp.extensions import db
from webapp.keys import mapping
from webapp.models import Tenant, utcnow
from webapp.usage import queries
from webapp.usage.queries import ScopeError, UsageFilter

POLL_SECONDS = 10
SAFE_FILENAME = re.compile(r"[^a-z0-9]+")
PLOTLY_VERSION = plotly.__version__


# ---------------------------------------------------------------- helpers


def htmx_target() -> str | None:
    if request.headers.get("HX-Request") != "true" or request.headers.get("HX-History-Restore-Request"):
        return None
    return request.headers.get("HX-Target")


def page_or_fragment(page_template: str, fragments: dict[str, str], status: int = 200, **context: Any) -> Response:
    """The fragment asked for by an HTMX request, else the whole page (which includes the fragments)."""
    template = fragments.get(htmx_target() or "", page_template)
    response = make_response(render_template(template, poll_seconds=POLL_SECONDS, **context), status)
    response.vary.add("HX-Request")
    return response


def link_to(endpoint: str, fallback: str, **values: Any) -> str:
    """Links into pages other helpers own; the fallback is the URL they announced."""
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return fallback


def _usage_filter(params: DashboardParams, tenant_id: int | None, is_staff: bool) -> UsageFilter:
    try:
        return queries.filter_for_viewer(
            tenant_id,
            is_staff=is_staff,
            tenant_id=tenant_id,
            api_key_id=params.api_key_id,
            model=params.model,
        )
    except ScopeError:
        abort(404)


def _dashboard(page: str, tenant: Tenant | None, base_url: str, staff_overview: bool = False) -> Response:
    params, errors = parse_params(DashboardParams, request.args)
    usage_filter = _usage_filter(params, tenant.id if tenant else None, is_staff=current_user.is_staff)
    now = utcnow()
    period = service.period_of(params, now)
    target = htmx_target()
    # The marker before the numbers; both from the read replica when one is in use (webapp/replica.py).
    marker = replica.read(live.usage_marker, usage_filter, period) if period.end > now else None
    if target == "kpis" and marker is not None and live.unchanged(request.args, marker, now):
        return live.no_change()
    currency = tenant.plan.currency if tenant is not None and tenant.plan is not None else "USD"
    if target == "kpis":
        data = replica.read(service.kpis, usage_filter, period, now)
    else:
        data = replica.read(service.full_dashboard, usage_filter, period, now, staff_overview, currency)
    options = _dashboard_options(data, tenant) if target is None else {}
    if staff_overview and target != "kpis":
        options |= _console_mapping(data)
    return page_or_fragment(
        page,
        {"kpis": "dashboard/_kpis.html", "dash-main": "dashboard/_main.html"},
        status=422 if errors else 200,
        params=params,
        errors=errors,
        data=data,
        tenant=tenant,
        base_url=base_url,
        query_args=params.query_args(),
        live_args=live.poll_args(params.query_args(), marker, now) if marker is not None else {},
        live_poll_seconds=current_app.config["DASHBOARD_POLL_SECONDS"],
        staff_overview=staff_overview,
        show_cost=current_user.is_staff,  # LiteLLM's cost and the margin: staff only
        currency=currency,
        tenant_link=tenant_link,
        keys_url=_keys_url(tenant),
        explorer_url=url_for("dashboard.staff_explorer" if current_user.is_staff else "dashboard.explorer"),
        **options,
    )


def _filter_options(usage_filter: UsageFilter, period: queries.Period, tenant: Tenant | None) -> dict[str, Any]:
    keys = queries.tenant_keys(tenant.id) if tenant else []
    return {
        "key_options": [(key.id, key.name) for key in keys],
        "model_options": [(model, model) for model in replica.read(queries.models_in_use, usage_filter, period)],
    }


def _dashboard_options(data: service.DashboardData, tenant: Tenant | None) -> dict[str, Any]:
    """Filter choices from what the page already loaded (no extra query over the period)."""
    keys = queries.tenant_keys(tenant.id) if tenant else []
    models = sorted(row.key for row in data.by_model if row.key)
    return {"key_options": [(key.id, key.name) for key in keys], "model_options": [(model, model) for model in models]}


def _keys_url(tenant: Tenant | None) -> str:
    """Where "create an API key" leads: the tenant's own keys page, or for staff the tenant's staff page."""
    if not current_user.is_staff:
        return url_for("keys.tenant_keys")
    if tenant is None:
        return url_for("dashboard.tenants")
    return url_for("dashboard.staff_tenant", tenant_id=tenant.id, _anchor="keys")


def _console_mapping(data: service.DashboardData) -> dict[str, Any]:
    """The console maps unmapped keys in place: what identifies each key, and the tenants to choose from."""
    return {
        "key_facts": mapping.key_facts([row.key for row in data.unmapped if row.key]),
        "tenant_options": _tenant_options(),
    }


def tenant_link(tenant_id: int) -> str:
    return url_for("dashboard.tenant_drilldown", tenant_id=tenant_id)


# ---------------------------------------------------------------- dashboards (routed from main/pages.py)


def tenant_dashboard() -> Response:
    return _dashboard("dashboard/tenant.html", current_user.tenant, url_for("main.tenant_home"))


def staff_overview() -> Response:
    return _dashboard("dashboard/staff.html", None, url_for("main.staff_home"), staff_overview=True)


@bp.get("/staff/tenants/<int:tenant_id>/usage")
@staff_required
def tenant_drilldown(tenant_id: int) -> Response:
    tenant = db.get_or_404(Tenant, tenant_id)
    return _dashboard("dashboard/tenant.html", tenant, url_for("dashboard.tenant_drilldown", tenant_id=tenant.id))


@bp.get("/staff/cards/sync")
@staff_required
def sync_card() -> Response:
    return page_or_fragment(
        "dashboard/_sync_card.html", {}, card=console.sync_card(), sync_url=link_to("sync.runs_page", "/staff/sync")
    )


@bp.get("/staff/cards/health")
@staff_required
def health_card() -> Response:
    return page_or_fragment("dashboard/_health_card.html", {}, card=console.health_card())


# ---------------------------------------------------------------- explorer


def _explorer(tenant_id: int | None, is_staff: bool, base_url: str, export_url: str) -> Response:
    params, errors = parse_params(explorer_params(is_staff), request.args)
    usage_filter = _usage_filter(params, tenant_id, is_staff)
    period = service.period_of(params, utcnow())
    page = replica.read(explorer.explore, params, usage_filter, period, for_staff=is_staff)
    tenant = db.session.get(Tenant, tenant_id) if tenant_id else None
    options = _filter_options(usage_filter, period, tenant)
    return page_or_fragment(
        "dashboard/explorer.html",
        {"explorer-results": "dashboard/_explorer_results.html"},
        status=422 if errors else 200,
        params=params,
        errors=errors,
        page=page,
        period=period,
        is_staff=is_staff,
        base_url=base_url,
        export_url=export_url,
        export_row_limit=current_app.config["EXPORT_MAX_ROWS"],
        query_args=params.query_args() | _explorer_args(params),
        tenant_options=_tenant_options() if is_staff else [],
        keys_url=_keys_url(tenant),
        **options,
    )


def _tenant_options() -> list[tuple[int, str]]:
    return [(tenant.id, tenant.name) for tenant in db.session.scalars(db.select(Tenant).order_by(Tenant.name))]


@bp.app_template_global("filter_label")
def filter_label(name: str) -> str:
    return field_label(name)


@bp.app_template_filter("dict_merge")
def dict_merge(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    return base | extra


def _explorer_args(params: ExplorerParams) -> dict[str, str]:
    names = {"status", "endpoint", "min_cost", "max_cost", "min_price", "max_price", "min_tokens", "max_tokens"}
    names |= {"sort", "direction"}
    values = params.model_dump(include=names, exclude_none=True, mode="json")
    return {name: str(value) for name, value in values.items()}


def _export(tenant_id: int | None, is_staff: bool) -> Response:
    params, errors = parse_params(explorer_params(is_staff), request.args)
    if errors:
        return make_response({"error": {"message": "Invalid input.", "fields": errors}}, 422)
    usage_filter = _usage_filter(params, tenant_id, is_staff)
    period = service.period_of(params, utcnow())
    statement = explorer.export_statement(params, usage_filter, period, for_staff=is_staff)
    owner = str(current_user.id)
    filename = export_filename(db.session.get(Tenant, tenant_id) if tenant_id is not None else None, period)
    from_replica = replica.read_engine() is not None
    # Give the app's pooled connection back before waiting for an export connection (objects reload on use).
    db.session.commit()
    try:
        body = exports.start_export(owner, statement, explorer.csv_layout(for_staff=is_staff), from_replica)
    except exports.ExportRefused as refusal:
        return _export_refusal(refusal)
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def export_filename(tenant: Tenant | None, period: queries.Period) -> str:
    """`usage-acme-2026-11-01_2026-11-30.csv`: only [a-z0-9-_.] so no header or path tricks get through."""
    owner = SAFE_FILENAME.sub("-", tenant.slug.lower()).strip("-")[:64] if tenant is not None else ""
    return f"usage-{owner or 'all-tenants'}-{period.first_day.isoformat()}_{period.last_day.isoformat()}.csv"


REFUSAL_TITLES = {429: _l("Too many exports"), 503: _l("Export unavailable")}


def _export_refusal(refusal: exports.ExportRefused) -> Response:
    """JSON for API clients, else a page with the message (the download link is a plain link, so people see it)."""
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        response = json_error(refusal.status, refusal.message, refusal.code)
    else:
        title = REFUSAL_TITLES.get(refusal.status, _l("Export refused"))
        page = render_template("error.html", status=refusal.status, title=title, message=refusal.message)
        response = make_response(page, refusal.status)
    if refusal.retry_after:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


@bp.get("/usage", endpoint="explorer")
@tenant_user_required
def explorer_page() -> Response:
    return _explorer(current_user.tenant_id, False, url_for("dashboard.explorer"), url_for("dashboard.export"))


@bp.get("/usage/export.csv")
@tenant_user_required
def export() -> Response:
    return _export(current_user.tenant_id, is_staff=False)


@bp.get("/staff/usage")
@staff_required
def staff_explorer() -> Response:
    params, _ = parse_params(ExplorerParams, request.args)
    return _explorer(
        params.tenant_id, True, url_for("dashboard.staff_explorer"), url_for("dashboard.staff_export")
    )


@bp.get("/staff/usage/export.csv")
@staff_required
def staff_export() -> Response:
    params, _ = parse_params(ExplorerParams, request.args)
    return _export(params.tenant_id, is_staff=True)


# ---------------------------------------------------------------- assets


@lru_cache(maxsize=1)
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


@bp.get(f"/assets/plotly-{PLOTLY_VERSION}.min.js")
def plotly_js() -> Response:
    """Plotly's bundle from the installed package: no CDN, works offline; versioned URL, cached for a year."""
    response = make_response(_plotly_js())
    response.mimetype = "application/javascript"
    response.cache_control.public = True
    response.cache_control.max_age = 365 * 24 * 3600
    response.cache_control.immutable = True
    response.add_etag()
    return response.make_conditional(request)  # type: ignore[return-value]


from webapp.dashboard import management, tenant_pages  # noqa: E402,F401
