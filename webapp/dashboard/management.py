"""Staff pages to list and create plans and tenants and to suspend or activate a tenant."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from pydantic import BaseModel, ValidationError

from webapp.auth.decorators import staff_required
from webapp.dashboard import bp, console
from webapp.dashboard.plan_pages import line_messages, parse_price_lines
from webapp.errors import ApiError, field_messages
from webapp.extensions import db
from webapp.i18n import value_label
from webapp.models import Tenant, TenantStatus, utcnow
from webapp.tenants import service
from webapp.tenants.schemas import PlanCreate, TenantCreate


def _form_fields(names: tuple[str, ...]) -> dict[str, Any]:
    """Submitted fields by name, blanks dropped so optional fields fall back to their defaults."""
    return {name: request.form[name].strip() for name in names if request.form.get(name, "").strip()}


def _plan_input() -> dict[str, Any]:
    names = ("name", "rpm_limit", "tpm_limit", "max_n", "monthly_budget", "markup_percent", "currency", "billing_mode")
    fields = _form_fields((*names, "monthly_fee"))
    models = request.form.get("allowed_models", "")
    fields["allowed_models"] = [model.strip() for model in models.split(",") if model.strip()]
    return fields


def _create(schema: type[BaseModel], data: dict[str, Any], create: Any) -> dict[str, str]:
    """Validate and create; the field messages on failure (empty on success)."""
    return _create_returning(schema, data, create)[1]


def _create_returning(schema: type[BaseModel], data: dict[str, Any], create: Any) -> tuple[Any, dict[str, str]]:
    """Validate and create: (what was created, {}) or (None, the field messages)."""
    try:
        created = create(schema.model_validate(data), current_user)
    except ValidationError as error:
        db.session.rollback()
        return None, field_messages(error)
    except ApiError as error:
        db.session.rollback()
        return None, error.fields or {"form": error.message}
    db.session.commit()
    return created, {}


def _tenants_page(errors: dict[str, str], submitted: dict[str, Any], status: int = 200) -> Response:
    return make_response(
        render_template(
            "dashboard/tenants.html",
            rows=console.tenants_with_month_cost(utcnow()),
            plans=service.list_plans(),
            errors=errors,
            submitted=submitted,
        ),
        status,
    )


@bp.route("/staff/tenants", methods=["GET", "POST"])
@staff_required
def tenants() -> Response:
    if request.method == "GET":
        return _tenants_page({}, {})
    data = _form_fields(("name", "slug", "plan_id"))
    tenant, errors = _create_returning(TenantCreate, data, service.create_tenant)
    if errors:
        return _tenants_page(errors, data, 422)
    flash(_("Tenant %(name)s created.", name=data["name"]), "info")
    # its page next: that is where its first admin and keys are added
    return redirect(url_for("dashboard.staff_tenant", tenant_id=tenant.id))  # type: ignore[return-value]


@bp.post("/staff/tenants/<int:tenant_id>/status")
@staff_required
def tenant_status(tenant_id: int) -> Response:
    tenant = db.get_or_404(Tenant, tenant_id)
    wanted = TenantStatus.SUSPENDED if request.form.get("status") == "suspended" else TenantStatus.ACTIVE
    service.set_tenant_status(tenant, wanted, current_user)
    db.session.commit()
    if request.headers.get("HX-Request") == "true":
        return make_response(render_template("dashboard/_tenant_status.html", tenant=tenant))
    flash(_("%(tenant)s is now %(status)s.", tenant=tenant.name, status=value_label(wanted)), "info")
    return redirect(request.referrer or url_for("dashboard.tenants"))  # type: ignore[return-value]


@bp.route("/staff/plans", methods=["GET", "POST"])
@staff_required
def plans() -> Response:
    errors: dict[str, str] = {}
    submitted: dict[str, Any] = {}
    if request.method == "POST":
        submitted = _plan_input()
        prices, price_lines, errors = parse_price_lines(request.form.get("model_prices", ""))
        if not errors:
            errors = _create(PlanCreate, submitted | {"model_prices": prices}, service.create_plan)
            errors = line_messages(errors, price_lines)
        submitted["model_prices"] = request.form.get("model_prices", "")
        if not errors:
            flash(_("Plan %(name)s created.", name=submitted["name"]), "info")
            return redirect(url_for("dashboard.plans"))  # type: ignore[return-value]
    page = render_template("dashboard/plans.html", plans=service.list_plans(), errors=errors, submitted=submitted)
    return make_response(page, 422 if errors else 200)

