"""Staff plan page: the plan's terms, its price book versions, and forms to change terms or add a version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from pydantic import ValidationError

from webapp.auth.decorators import staff_required
from webapp.billing import price_book
from webapp.dashboard import bp
from webapp.errors import ApiError, field_messages
from webapp.extensions import db
from webapp.models import Plan, PriceBookVersion, utcnow
from webapp.tenants import service
from webapp.tenants.schemas import PlanUpdate

PRICE_LINES_HINT = _l("One model per line: its name, then the input and the output price per million tokens.")
TERM_FIELDS = ("name", "rpm_limit", "tpm_limit", "max_n", "monthly_budget", "billing_mode", "monthly_fee")
NULLABLE_TERMS = ("rpm_limit", "tpm_limit", "max_n", "monthly_budget", "monthly_fee")


def parse_price_lines(text: str) -> tuple[list[dict[str, str]], list[int], dict[str, str]]:
    """'model input output' per line (spaces or commas) -> model_prices entries, their line numbers, errors."""
    prices: list[dict[str, str]] = []
    line_numbers: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != 3:
            message = _("line %(number)s: write the model name, then its input and output price per million tokens",
                        number=number)
            return [], [], {"model_prices": message}
        model, input_price, output_price = parts
        prices.append({"model": model, "input_per_million": input_price, "output_per_million": output_price})
        line_numbers.append(number)
    return prices, line_numbers, {}


def price_lines_text(version: PriceBookVersion) -> str:
    return "\n".join(
        f"{price.model} {_plain(price.input_per_million)} {_plain(price.output_per_million)}"
        for price in version.model_prices
    )


@bp.app_template_filter("plain_decimal")
def _plain(value: Any) -> str:
    """10.50 -> "10.5", 10 -> "10" (never "1E+1")."""
    return format(value.normalize(), "f")


def _form_moment(text: str) -> datetime | str:
    """A datetime-local value is UTC (the form says so); anything unparsable goes on for its field message."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def line_messages(messages: dict[str, str], line_numbers: list[int]) -> dict[str, str]:
    """`model_prices.1.input_per_million` -> `model_prices`: 'line 2, input_per_million: ...'."""
    friendly: dict[str, str] = {}
    for name, message in messages.items():
        parts = name.split(".")
        if parts[0] == "model_prices" and len(parts) >= 2 and parts[1].isdigit():
            index = int(parts[1])
            line = line_numbers[index] if index < len(line_numbers) else index + 1
            detail = f", {parts[2]}" if len(parts) > 2 else ""
            friendly.setdefault("model_prices", _("line %(line)s%(detail)s: %(message)s", line=line, detail=detail,
                                                  message=message))
        else:
            friendly.setdefault(parts[0], message)
    return friendly


def _version_input() -> tuple[dict[str, Any], list[int], dict[str, str]]:
    prices, line_numbers, errors = parse_price_lines(request.form.get("model_prices", ""))
    body: dict[str, Any] = {"markup_percent": request.form.get("markup_percent", "").strip(), "model_prices": prices}
    moment = request.form.get("effective_from", "").strip()
    if moment:
        body["effective_from"] = _form_moment(moment)
    return body, line_numbers, errors


def _terms_input() -> dict[str, Any]:
    body: dict[str, Any] = {name: request.form.get(name, "").strip() for name in TERM_FIELDS}
    for name in NULLABLE_TERMS:
        body[name] = body[name] or None
    models = request.form.get("allowed_models", "")
    body["allowed_models"] = [model.strip() for model in models.split(",") if model.strip()]
    return body


def _apply(plan: Plan, body: dict[str, Any], line_numbers: list[int]) -> dict[str, str]:
    try:
        service.update_plan(plan, PlanUpdate.model_validate(body), current_user)
    except ValidationError as error:
        db.session.rollback()
        return line_messages(field_messages(error), line_numbers)
    except ApiError as error:
        db.session.rollback()
        return error.fields or {"form": error.message}
    db.session.commit()
    return {}


@bp.route("/staff/plans/<int:plan_id>", methods=["GET", "POST"])
@staff_required
def plan_page(plan_id: int) -> Response:
    plan = db.get_or_404(Plan, plan_id)
    errors: dict[str, str] = {}
    form = request.form.get("form", "")
    if request.method == "POST":
        if form == "version":
            body, line_numbers, errors = _version_input()
            errors = errors or _apply(plan, body, line_numbers)
            success = _("New prices saved as a price book version.")
        else:
            errors = _apply(plan, _terms_input(), [])
            success = _("Plan terms saved.")
        if not errors:
            flash(success, "info")
            return redirect(url_for("dashboard.plan_page", plan_id=plan.id))  # type: ignore[return-value]
        plan = db.get_or_404(Plan, plan_id)  # the failed change was rolled back
    return _plan_page(plan, errors, form if errors else "", request.form if errors else None)


def _plan_page(plan: Plan, errors: dict[str, str], failed_form: str, submitted: Any) -> Response:
    now = utcnow()
    versions = price_book.versions_of(plan)
    in_force = price_book.version_in_force(plan, now)
    latest = versions[0]
    page = render_template(
        "dashboard/plan.html",
        plan=plan,
        versions=versions,
        in_force=in_force,
        now=now,
        errors=errors,
        failed_form=failed_form,
        submitted=submitted,
        version_defaults={"markup_percent": _plain(latest.markup_percent), "model_prices": price_lines_text(latest)},
        price_lines_hint=PRICE_LINES_HINT,
        earliest=price_book.earliest_effective_from(now),
    )
    return make_response(page, 422 if errors else 200)
