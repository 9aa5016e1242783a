"""Key pages: tenant users see their keys (admins manage them); staff see every key and map LiteLLM keys.

Every view parses, calls one service function, renders. A page showing a new secret is never cached and
the secret is never put in the session (flash messages live in the cookie).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from pydantic import ValidationError
from werkzeug.wrappers import Response

from webapp.auth.decorators import staff_required, tenant_admin_required, tenant_user_required
from webapp.auth.forms import EmptyForm
from webapp.errors import ApiError, field_messages
from webapp.extensions import db
from webapp.keys import bp, mapping, quickstart, service
from webapp.keys.forms import AssignForm, KeyCreateForm
from webapp.keys.schemas import KeyCreate, normalise_token
from webapp.models import ApiKey, Tenant

NO_STORE = {"Cache-Control": "no-store"}


def _tenant_id() -> int:
    return int(current_user.tenant_id)


def _keys_page(form: KeyCreateForm, status: int = 200) -> tuple[str, int]:
    keys = service.list_tenant_keys(_tenant_id())
    plan = current_user.tenant.plan
    allowances = {key.id: quickstart.key_allowance(key, plan) for key in keys}
    page = render_template(
        "keys/tenant_keys.html", keys=keys, form=form, action_form=EmptyForm(), service=service,
        can_manage=current_user.is_tenant_admin, allowances=allowances,
        quickstart=quickstart.build_quickstart(plan.allowed_models if plan else []),
    )
    return page, status


def secret_page(issued: service.IssuedKey, action: str, done_url: str | None = None) -> Response:
    """The new secret, once, with the quickstart; `done_url` is where "Done" leads (the keys page by default)."""
    allowance = quickstart.key_allowance(issued.api_key, issued.api_key.tenant.plan)
    page = render_template(
        "keys/secret_once.html", issued=issued, action=action, allowance=allowance,
        quickstart=quickstart.build_quickstart(allowance.models, issued.secret),
        done_url=done_url or url_for("keys.tenant_keys"),
    )
    return make_response(page, 201, NO_STORE)


def _try(operation: Callable[[], service.IssuedKey], form: KeyCreateForm | None) -> service.IssuedKey | None:
    """Run a key operation and commit; failures become form or flash messages (nothing is kept)."""
    try:
        issued = operation()
        service.commit_key_changes()
        return issued
    except ValidationError as exc:
        db.session.rollback()
        if form is not None:
            form.add_errors(field_messages(exc))
    except ApiError as exc:
        db.session.rollback()
        if form is None or not form.add_errors(exc.fields):
            flash(exc.message, "error")
    return None


# ---------------------------------------------------------------- tenant pages


@bp.get("/keys")
@tenant_user_required
def tenant_keys() -> tuple[str, int]:
    return _keys_page(KeyCreateForm())


@bp.post("/keys")
@tenant_admin_required
def create_key() -> Response | tuple[str, int]:
    form = KeyCreateForm()
    if form.validate_on_submit():
        tenant = db.get_or_404(Tenant, _tenant_id())
        issued = _try(lambda: service.create_key(tenant, KeyCreate.model_validate(form.payload()), current_user), form)
        if issued is not None:
            return secret_page(issued, "created")
    return _keys_page(form, 422)


@bp.get("/keys/<int:key_id>/<any(rotate, revoke):action>")
@tenant_admin_required
def confirm_key_action(key_id: int, action: str) -> str:
    api_key = service.get_key(key_id, _tenant_id())
    return render_template("keys/confirm.html", api_key=api_key, action=action, form=EmptyForm(),
                           grace_hours=service.rotation_grace().total_seconds() / 3600)


@bp.post("/keys/<int:key_id>/rotate")
@tenant_admin_required
def rotate_key(key_id: int) -> Response:
    api_key = service.get_key(key_id, _tenant_id())
    if not EmptyForm().validate_on_submit():
        abort(400)
    issued = _try(lambda: service.rotate_key(api_key, current_user), None)
    if issued is None:
        return redirect(url_for("keys.tenant_keys"))
    return secret_page(issued, "rotated")


@bp.post("/keys/<int:key_id>/revoke")
@tenant_admin_required
def revoke_key(key_id: int) -> Response:
    _revoke(service.get_key(key_id, _tenant_id()))
    return redirect(url_for("keys.tenant_keys"))


def _revoke(api_key: ApiKey) -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        service.revoke_key(api_key, current_user)
        service.commit_key_changes()
        flash(_("Key “%(name)s” is revoked.", name=api_key.name), "info")
    except ApiError as exc:
        db.session.rollback()
        flash(exc.message, "error")


# ---------------------------------------------------------------- staff pages


def _tenant_choices() -> list[tuple[int, str]]:
    tenants = db.session.scalars(sa.select(Tenant).order_by(Tenant.name))
    return [(0, "Choose a tenant…"), *((tenant.id, tenant.name) for tenant in tenants)]


def _assign_form() -> AssignForm:
    form = AssignForm()
    form.tenant_id.choices = _tenant_choices()
    return form


@bp.get("/staff/keys")
@staff_required
def staff_keys() -> str:
    tenant_id = request.args.get("tenant_id", type=int)
    keys = service.list_all_keys(tenant_id)
    tenants = {tenant.id: tenant for tenant in db.session.scalars(sa.select(Tenant))}
    return render_template("keys/staff_keys.html", keys=keys, tenants=tenants, tenant_id=tenant_id,
                           service=service)


@bp.post("/staff/keys/<int:key_id>/revoke")
@staff_required
def staff_revoke_key(key_id: int) -> Response:
    """Operators can kill any key at once (a leaked secret, an abusive tenant)."""
    api_key = service.get_key(key_id, None)
    _revoke(api_key)
    return redirect(url_for("keys.staff_keys", tenant_id=api_key.tenant_id))


@bp.get("/staff/key-mappings")
@staff_required
def staff_key_mappings() -> str:
    return render_template(
        "keys/staff_mappings.html", unmapped=mapping.unmapped_keys(), mapped=mapping.mapped_imported_keys(),
        form=_assign_form(), action_form=EmptyForm(),
    )


def _token_or_404(token: str) -> str:
    try:
        return normalise_token(token)
    except ValueError:
        abort(404)


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def _mapping_view() -> str:
    """Which list the change came from: the console's unmapped card or the key mapping page."""
    return "console" if request.form.get("view") == "console" else "page"


def _mapping_return() -> Response:
    return redirect(url_for("main.staff_home" if _mapping_view() == "console" else "keys.staff_key_mappings"))


def _fragment(html: str, status: int) -> Response:
    response = make_response(html, status)
    response.headers["Vary"] = "HX-Request"
    return response


def _mapping_moved(token: str, message: str) -> Response:
    """The row has left its list (the form swaps it away); the answer adds it to the other list, out of band."""
    if not _is_htmx():
        flash(message, "info")
        return _mapping_return()
    page = render_template("keys/_mapping_moved.html", entry=mapping.mapping_entry(token), view=_mapping_view(),
                           form=_assign_form(), action_form=EmptyForm(), message=message)
    return _fragment(page, 200)


def _mapping_refused(token: str, message: str) -> Response:
    """The row stays where it is, with the reason next to its button."""
    if not _is_htmx():
        flash(message, "error")
        return _mapping_return()
    response = _fragment(render_template("keys/_mapping_error.html", token=token, message=message), 422)
    response.headers["HX-Reswap"] = "none"
    return response


def _key_label(token: str) -> str:
    entry = mapping.mapping_entry(token)
    return entry.key_alias or entry.key_name or f"{token[:16]}…"


@bp.post("/staff/key-mappings/<string:token>")
@staff_required
def assign_key(token: str) -> Response:
    token = _token_or_404(token)
    form = _assign_form()
    tenant = db.session.get(Tenant, form.tenant_id.data) if form.validate_on_submit() else None
    if tenant is None:
        return _mapping_refused(token, _("Pick a tenant."))
    try:
        mapping.assign_key(token, tenant, current_user)
        service.commit_key_changes()
    except ApiError as exc:
        db.session.rollback()
        return _mapping_refused(token, exc.message)
    message = _("“%(key)s” belongs to %(tenant)s now; its usage moved with it.", key=_key_label(token),
                tenant=tenant.name)
    return _mapping_moved(token, message)


@bp.post("/staff/key-mappings/<string:token>/unassign")
@staff_required
def unassign_key(token: str) -> Response:
    token = _token_or_404(token)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        mapping.unassign_key(token, current_user)
        service.commit_key_changes()
    except ApiError as exc:
        db.session.rollback()
        return _mapping_refused(token, exc.message)
    return _mapping_moved(token, _("“%(key)s” belongs to no tenant now; its usage is unattributed.",
                                   key=_key_label(token)))

