"""Webhook pages for tenant admins (/webhooks) and staff (/staff/webhooks), and every user's
notification settings (/settings/notifications). A page showing a new secret is never cached."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from pydantic import ValidationError
from werkzeug.wrappers import Response

from webapp.auth.decorators import staff_required, tenant_admin_required
from webapp.auth.forms import EmptyForm
from webapp.errors import ApiError, field_messages
from webapp.extensions import db
from webapp.models import Tenant, WebhookEndpoint
from webapp.webhooks import preferences, service
from webapp.webhooks.delivery import DeliverySettings, pending_counts
from webapp.webhooks.events import EVENT_TYPES, subscribable_events
from webapp.webhooks.forms import EndpointForm, NotificationsForm, event_choices
from webapp.webhooks.mail import mail_settings
from webapp.webhooks.schemas import DeliveriesQuery, EndpointCreate, EndpointUpdate

bp = Blueprint("webhooks", __name__)  # also the `flask webhooks ...` command group (webapp.webhooks.commands)
NO_STORE = {"Cache-Control": "no-store"}
Result = TypeVar("Result")


@dataclass(frozen=True)
class Area:
    """Tenant admins and staff share the pages; this says whose endpoints and which URLs."""

    staff: bool
    tenant_id: int | None  # None: staff, who reach every endpoint
    prefix: str  # endpoint name prefix: "tenant" or "staff"

    def url(self, page: str, **values: Any) -> str:
        return url_for(f"webhooks.{self.prefix}_{page}", **values)


def _tenant_area() -> Area:
    return Area(staff=False, tenant_id=int(current_user.tenant_id), prefix="tenant")


STAFF_AREA = Area(staff=True, tenant_id=None, prefix="staff")


def _endpoint_form(area: Area, endpoint: WebhookEndpoint | None = None) -> EndpointForm:
    form = EndpointForm(obj=endpoint) if endpoint is not None and request.method == "GET" else EndpointForm()
    for_staff = endpoint.tenant_id is None if endpoint is not None else area.staff
    form.events.choices = event_choices(subscribable_events(for_staff))
    return form


def _try(operation: Callable[[], Result], form: EndpointForm | None) -> Result | None:
    """Run a service call and commit; failures become field or flash messages, nothing is kept."""
    try:
        result = operation()
        db.session.commit()
        return result
    except ValidationError as exc:
        db.session.rollback()
        messages = field_messages(exc)
        if form is None or not form.add_errors(messages):
            flash("; ".join(f"{name}: {message}" for name, message in messages.items()), "error")
    except ApiError as exc:
        db.session.rollback()
        if form is None or not form.add_errors(exc.fields):
            flash(exc.message, "error")
    return None


def _list_page(area: Area, form: EndpointForm, status: int = 200) -> tuple[str, int]:
    endpoints = service.all_endpoints() if area.staff else service.tenant_endpoints(area.tenant_id or 0)
    tenants = {tenant.id: tenant for tenant in db.session.scalars(sa.select(Tenant))} if area.staff else {}
    page = render_template(
        "webhooks/list.html", area=area, endpoints=endpoints, form=form, tenants=tenants,
        pending=pending_counts(endpoint.id for endpoint in endpoints),
        retry_hours=sum(DeliverySettings.from_config(current_app.config).retry_delays) / 3600,
    )
    return page, status


def _secret_page(area: Area, endpoint: WebhookEndpoint, secret: str, action: str) -> Response:
    page = render_template("webhooks/secret_once.html", area=area, endpoint=endpoint, secret=secret, action=action)
    return make_response(page, 201 if action == "created" else 200, NO_STORE)


def _detail_page(area: Area, endpoint: WebhookEndpoint, form: EndpointForm, status: int = 200) -> tuple[str, int]:
    query = DeliveriesQuery(page=request.args.get("page", 1, type=int) or 1, per_page=25)
    deliveries = service.deliveries_page(endpoint, query)
    page = render_template(
        "webhooks/detail.html", area=area, endpoint=endpoint, form=form, deliveries=deliveries,
        attempts=service.attempts_of(list(deliveries.items)), action_form=EmptyForm(),
        tenant=db.session.get(Tenant, endpoint.tenant_id) if endpoint.tenant_id else None,
    )
    return page, status


def _explain(form: EndpointForm, schema: type[EndpointCreate] | type[EndpointUpdate], payload: dict[str, Any]) -> None:
    """After a failed form check, also show what the schema says about fields the form found no fault with."""
    try:
        schema.model_validate(payload)
    except ValidationError as exc:
        fresh = {}
        for name, message in field_messages(exc).items():
            field = getattr(form, name.split(".")[0], None)
            if field is not None and not field.errors:
                fresh[name] = message
        form.add_errors(fresh)


def _require_post_form() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


# ---------------------------------------------------------------- shared handlers


def _create(area: Area) -> Response | tuple[str, int]:
    form = _endpoint_form(area)
    if form.validate_on_submit():
        tenant = db.session.get(Tenant, area.tenant_id) if area.tenant_id is not None else None
        created = _try(
            lambda: service.create_endpoint(EndpointCreate.model_validate(form.payload(False)), tenant, current_user),
            form,
        )
        if created is not None:
            return _secret_page(area, created.endpoint, created.secret, "created")
    else:
        _explain(form, EndpointCreate, form.payload(False))
    return _list_page(area, form, 422)


def _update(area: Area, endpoint_id: int) -> Response | tuple[str, int]:
    endpoint = service.get_endpoint(endpoint_id, area.tenant_id)
    form = _endpoint_form(area, endpoint)
    if form.validate_on_submit():
        updated = _try(
            lambda: service.update_endpoint(
                endpoint, EndpointUpdate.model_validate(form.payload(True)), current_user
            ),
            form,
        )
        if updated is not None:
            flash(_("Endpoint saved."), "info")
            return redirect(area.url("endpoint", endpoint_id=endpoint_id))
        endpoint = service.get_endpoint(endpoint_id, area.tenant_id)
    else:
        _explain(form, EndpointUpdate, form.payload(True))
    return _detail_page(area, endpoint, form, 422)


def _delete(area: Area, endpoint_id: int) -> Response:
    endpoint = service.get_endpoint(endpoint_id, area.tenant_id)
    _require_post_form()
    if _try(lambda: service.delete_endpoint(endpoint, current_user), None) is not None:
        flash(_("Endpoint deleted."), "info")
    return redirect(area.url("endpoints"))


def _rotate(area: Area, endpoint_id: int) -> Response:
    endpoint = service.get_endpoint(endpoint_id, area.tenant_id)
    _require_post_form()
    secret = _try(lambda: service.rotate_secret(endpoint, current_user), None)
    if secret is None:
        return redirect(area.url("endpoint", endpoint_id=endpoint_id))
    return _secret_page(area, endpoint, secret, "rotated")


def _test(area: Area, endpoint_id: int) -> Response:
    endpoint = service.get_endpoint(endpoint_id, area.tenant_id)
    _require_post_form()
    if _try(lambda: service.send_test(endpoint, current_user), None) is not None:
        flash(_("A webhook.test event is queued; it appears below within seconds."), "info")
    return redirect(area.url("endpoint", endpoint_id=endpoint_id))


def _resend(area: Area, endpoint_id: int, delivery_id: int) -> Response:
    endpoint = service.get_endpoint(endpoint_id, area.tenant_id)
    _require_post_form()
    if _try(lambda: service.resend(endpoint, delivery_id, current_user), None) is not None:
        flash(_("The event is queued again; the new attempt appears below within seconds."), "info")
    return redirect(area.url("endpoint", endpoint_id=endpoint_id))


# ---------------------------------------------------------------- tenant admins


@bp.get("/webhooks")
@tenant_admin_required
def tenant_endpoints() -> tuple[str, int]:
    area = _tenant_area()
    return _list_page(area, _endpoint_form(area))


@bp.post("/webhooks")
@tenant_admin_required
def tenant_create() -> Response | tuple[str, int]:
    return _create(_tenant_area())


@bp.get("/webhooks/<int:endpoint_id>")
@tenant_admin_required
def tenant_endpoint(endpoint_id: int) -> tuple[str, int]:
    area = _tenant_area()
    endpoint = service.get_endpoint(endpoint_id, area.tenant_id)
    return _detail_page(area, endpoint, _endpoint_form(area, endpoint))


@bp.post("/webhooks/<int:endpoint_id>")
@tenant_admin_required
def tenant_update(endpoint_id: int) -> Response | tuple[str, int]:
    return _update(_tenant_area(), endpoint_id)


@bp.post("/webhooks/<int:endpoint_id>/delete")
@tenant_admin_required
def tenant_delete(endpoint_id: int) -> Response:
    return _delete(_tenant_area(), endpoint_id)


@bp.post("/webhooks/<int:endpoint_id>/rotate-secret")
@tenant_admin_required
def tenant_rotate(endpoint_id: int) -> Response:
    return _rotate(_tenant_area(), endpoint_id)


@bp.post("/webhooks/<int:endpoint_id>/test")
@tenant_admin_required
def tenant_test(endpoint_id: int) -> Response:
    return _test(_tenant_area(), endpoint_id)


@bp.post("/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/resend")
@tenant_admin_required
def tenant_resend(endpoint_id: int, delivery_id: int) -> Response:
    return _resend(_tenant_area(), endpoint_id, delivery_id)


# ---------------------------------------------------------------- staff


@bp.get("/staff/webhooks")
@staff_required
def staff_endpoints() -> tuple[str, int]:
    return _list_page(STAFF_AREA, _endpoint_form(STAFF_AREA))


@bp.post("/staff/webhooks")
@staff_required
def staff_create() -> Response | tuple[str, int]:
    return _create(STAFF_AREA)


@bp.get("/staff/webhooks/<int:endpoint_id>")
@staff_required
def staff_endpoint(endpoint_id: int) -> tuple[str, int]:
    endpoint = service.get_endpoint(endpoint_id, None)
    return _detail_page(STAFF_AREA, endpoint, _endpoint_form(STAFF_AREA, endpoint))


@bp.post("/staff/webhooks/<int:endpoint_id>")
@staff_required
def staff_update(endpoint_id: int) -> Response | tuple[str, int]:
    return _update(STAFF_AREA, endpoint_id)


@bp.post("/staff/webhooks/<int:endpoint_id>/delete")
@staff_required
def staff_delete(endpoint_id: int) -> Response:
    return _delete(STAFF_AREA, endpoint_id)


@bp.post("/staff/webhooks/<int:endpoint_id>/rotate-secret")
@staff_required
def staff_rotate(endpoint_id: int) -> Response:
    return _rotate(STAFF_AREA, endpoint_id)


@bp.post("/staff/webhooks/<int:endpoint_id>/test")
@staff_required
def staff_test(endpoint_id: int) -> Response:
    return _test(STAFF_AREA, endpoint_id)


@bp.post("/staff/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/resend")
@staff_required
def staff_resend(endpoint_id: int, delivery_id: int) -> Response:
    return _resend(STAFF_AREA, endpoint_id, delivery_id)


# ---------------------------------------------------------------- notification settings


def _notifications_form() -> NotificationsForm:
    form = NotificationsForm()
    form.events.choices = event_choices(preferences.receivable_events(current_user))
    return form


@bp.route("/settings/notifications", methods=["GET", "POST"])
@login_required
def notifications() -> Response | str:
    form = _notifications_form()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        wanted = set(form.events.data or [])
        choices = {event: event in wanted for event in preferences.receivable_events(current_user)}
        if _try(lambda: preferences.set_email_choices(current_user, choices), None) is not None:
            flash(_("Notification settings saved."), "info")
        return redirect(url_for("webhooks.notifications"))
    choices = preferences.email_choices(current_user)
    form.events.data = [event for event, wanted in choices.items() if wanted]
    return render_template(
        "webhooks/notifications.html", form=form, choices=choices, event_types=EVENT_TYPES,
        mail_on=mail_settings() is not None,
    )


from webapp.webhooks import commands  # noqa: E402,F401  (attaches the CLI commands to bp)
