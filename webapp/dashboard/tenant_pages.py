"""The staff tenant page: one tenant's status, plan, users and invitations, and keys, each changed by a form.

Every change goes through the service the REST API and the tenant's own pages use (tenants, team, keys).
A refused change re-renders the page with the message at its field (422), or as a flash when it concerns no
field. Usage has its own page (`dashboard.tenant_drilldown`) and billing the billing pages: both are linked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from flask import abort, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import SelectField

from webapp import replica
from webapp.auth.decorators import staff_required
from webapp.auth.forms import EmptyForm, FieldErrorsMixin
from webapp.dashboard import bp
from webapp.errors import commit_or_report
from webapp.extensions import db
from webapp.keys import service as key_service
from webapp.keys import views as key_views
from webapp.keys.forms import KeyCreateForm
from webapp.keys.schemas import KeyCreate
from webapp.models import Plan, Tenant, User, UserRole, utcnow
from webapp.team import service as team_service
from webapp.team.forms import InviteForm, MemberCreateForm
from webapp.tenants import service as tenant_service
from webapp.tenants.schemas import TenantUpdate, UserCreate
from webapp.usage import queries

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
class PlanChangeForm(FieldErrorsMixin, FlaskForm):
    plan_id = SelectField(_l("Plan"), coerce=int, validate_choice=False)


@dataclass
class TenantForms:
    """The page's forms; the one that was submitted keeps its values and messages, the others start blank."""

    plan: PlanChangeForm
    member: MemberCreateForm
    invite: InviteForm
    key: KeyCreateForm

    @classmethod
    def blank(cls, tenant: Tenant, **submitted: Any) -> TenantForms:
        plan = PlanChangeForm(formdata=None, plan_id=tenant.plan_id or 0)
        forms = cls(plan, MemberCreateForm(formdata=None), InviteForm(formdata=None), KeyCreateForm(formdata=None))
        return dataclasses.replace(forms, **submitted)


def _actor() -> User:
    user: User = current_user._get_current_object()
    return user


def _tenant(tenant_id: int) -> Tenant:
    return db.get_or_404(Tenant, tenant_id)


def _month_summary(tenant: Tenant) -> dict[str, Any]:
    """This month's usage at a glance (the usage page has the rest), read like the dashboards read it."""
    now = utcnow()
    period = queries.month_period(now)
    return {
        "totals": replica.read(queries.totals, queries.UsageFilter(tenant_id=tenant.id), period),
        "budget": replica.read(queries.budget_status, tenant.id, now),
        "period": period,
    }


def _page(tenant: Tenant, forms: TenantForms | None = None, status: int = 200) -> Response:
    forms = forms or TenantForms.blank(tenant)
    forms.plan.plan_id.choices = [(plan.id, plan.name) for plan in tenant_service.list_plans()]
    page = render_template(
        "dashboard/staff_tenant.html",
        tenant=tenant,
        forms=forms,
        members=team_service.list_members(tenant.id),
        invites=team_service.list_pending_invites(tenant.id),
        keys=key_service.list_tenant_keys(tenant.id),
        key_status=key_service.display_status,
        is_imported=key_service.is_imported,
        summary=_month_summary(tenant),
        currency=tenant.plan.currency if tenant.plan else "USD",
    )
    return make_response(page, status)


def _back(tenant_id: int, anchor: str = "") -> Response:
    url = url_for("dashboard.staff_tenant", tenant_id=tenant_id, _anchor=anchor or None)
    return redirect(url)


def _require_button_form() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


# ---------------------------------------------------------------- the page and its plan


@bp.get("/staff/tenants/<int:tenant_id>")
@staff_required
def staff_tenant(tenant_id: int) -> Response:
    return _page(_tenant(tenant_id))


@bp.post("/staff/tenants/<int:tenant_id>/plan")
@staff_required
def change_plan(tenant_id: int) -> Response:
    tenant = _tenant(tenant_id)
    form = PlanChangeForm()
    chosen = form.plan_id.data if form.validate_on_submit() else None
    if not chosen or db.session.get(Plan, chosen) is None:
        form.plan_id.errors = [_("Choose one of the plans.")]
        return _page(tenant, TenantForms.blank(tenant, plan=form), 422)
    update = TenantUpdate(plan_id=chosen)
    if commit_or_report(lambda: tenant_service.update_tenant(tenant, update, _actor()), form) is None:
        return _page(_tenant(tenant_id), TenantForms.blank(tenant, plan=form), 422)
    plan_name = tenant.plan.name if tenant.plan else ""
    flash(_("%(tenant)s is on the %(plan)s plan now.", tenant=tenant.name, plan=plan_name), "info")
    return _back(tenant_id)


# ---------------------------------------------------------------- users and invitations


@bp.post("/staff/tenants/<int:tenant_id>/users")
@staff_required
def add_user(tenant_id: int) -> Response:
    tenant = _tenant(tenant_id)
    form = MemberCreateForm()
    if form.validate_on_submit():
        data = {"email": form.email.data or "", "name": form.name.data or "", "password": form.password.data or "",
                "role": form.role.data}
        user = commit_or_report(
            lambda: team_service.create_member(tenant, UserCreate.model_validate(data), _actor()), form
        )
        if user is not None:
            flash(_("%(email)s can sign in now.", email=user.email), "info")
            return _back(tenant_id, "users")
    return _page(_tenant(tenant_id), TenantForms.blank(tenant, member=form), 422)


@bp.post("/staff/tenants/<int:tenant_id>/invites")
@staff_required
def invite_user(tenant_id: int) -> Response:
    tenant = _tenant(tenant_id)
    form = InviteForm()
    if form.validate_on_submit():
        role, actor = UserRole(form.role.data), _actor()
        issued = commit_or_report(lambda: team_service.create_invite(tenant, form.email.data or "", role, actor), form)
        if issued is not None:
            link = url_for("team.join", token=issued.token, _external=True)
            emailed = team_service.email_invite(issued, link, actor)
            page = render_template("team/invite_created.html", invite=issued.invite, link=link, emailed=emailed,
                                   done_url=url_for("dashboard.staff_tenant", tenant_id=tenant_id, _anchor="users"))
            return make_response(page, 201, NO_STORE)
    return _page(_tenant(tenant_id), TenantForms.blank(tenant, invite=form), 422)


@bp.post("/staff/tenants/<int:tenant_id>/users/<int:user_id>/deactivate")
@staff_required
def deactivate_user(tenant_id: int, user_id: int) -> Response:
    member = team_service.get_member(_tenant(tenant_id).id, user_id)
    _require_button_form()
    if commit_or_report(lambda: team_service.remove_member(member, _actor()), None):
        flash(_("%(email)s is deactivated and signed out.", email=member.email), "info")
    return _back(tenant_id, "users")


@bp.post("/staff/tenants/<int:tenant_id>/invites/<int:invite_id>/revoke")
@staff_required
def revoke_invite(tenant_id: int, invite_id: int) -> Response:
    invite = team_service.get_invite(_tenant(tenant_id).id, invite_id)
    _require_button_form()
    if commit_or_report(lambda: team_service.revoke_invite(invite, _actor()), None):
        flash(_("The invitation to %(email)s is withdrawn.", email=invite.email), "info")
    return _back(tenant_id, "users")


# ---------------------------------------------------------------- keys


@bp.post("/staff/tenants/<int:tenant_id>/keys")
@staff_required
def create_key(tenant_id: int) -> Response:
    tenant = _tenant(tenant_id)
    form = KeyCreateForm()
    if form.validate_on_submit():
        create = lambda: key_service.create_key(tenant, KeyCreate.model_validate(form.payload()), _actor())  # noqa: E731
        issued = commit_or_report(create, form, commit=key_service.commit_key_changes)
        if issued is not None:
            done = url_for("dashboard.staff_tenant", tenant_id=tenant_id, _anchor="keys")
            return key_views.secret_page(issued, "created", done_url=done)
    return _page(_tenant(tenant_id), TenantForms.blank(tenant, key=form), 422)


@bp.post("/staff/tenants/<int:tenant_id>/keys/<int:key_id>/revoke")
@staff_required
def revoke_key(tenant_id: int, key_id: int) -> Response:
    api_key = key_service.get_key(key_id, _tenant(tenant_id).id)
    _require_button_form()
    revoke = lambda: key_service.revoke_key(api_key, _actor())  # noqa: E731
    if commit_or_report(revoke, None, commit=key_service.commit_key_changes):
        flash(_("Key “%(name)s” is revoked.", name=api_key.name), "info")
    return _back(tenant_id, "keys")
