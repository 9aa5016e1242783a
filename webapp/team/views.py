"""Team pages (/team) for tenant admins, and the public page that accepts an invitation.

The page showing a new invitation link is never cached; the link is not kept anywhere but in the email.
"""

from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from webapp.auth.decorators import tenant_admin_required
from webapp.auth.forms import EmptyForm
from webapp.errors import ApiError, commit_or_report
from webapp.extensions import db
from webapp.i18n import value_label
from webapp.models import Tenant, User, UserRole, utcnow
from webapp.team import bp, service
from webapp.team.forms import AcceptInviteForm, InviteForm, MemberCreateForm, RoleForm
from webapp.tenants.schemas import UserCreate

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
def _actor() -> User:
    user: User = current_user._get_current_object()
    return user


def _tenant() -> Tenant:
    return db.get_or_404(Tenant, int(current_user.tenant_id))


def _team_page(invite_form: InviteForm | None = None, create_form: MemberCreateForm | None = None,
               status: int = 200) -> tuple[str, int]:
    tenant_id = int(current_user.tenant_id)
    page = render_template(
        "team/team.html", members=service.list_members(tenant_id), invites=service.list_pending_invites(tenant_id),
        invite_form=invite_form or InviteForm(), create_form=create_form or MemberCreateForm(),
        action_form=EmptyForm(), role_choices=RoleForm().role.choices, hours=int(service.invite_lifetime()
                                                                                 .total_seconds() // 3600),
    )
    return page, status


@bp.get("/team")
@tenant_admin_required
def team() -> tuple[str, int]:
    return _team_page()


@bp.post("/team/invites")
@tenant_admin_required
def create_invite() -> Response | tuple[str, int]:
    form = InviteForm()
    if form.validate_on_submit():
        tenant, actor = _tenant(), _actor()
        role = UserRole(form.role.data)
        issued = commit_or_report(lambda: service.create_invite(tenant, form.email.data or "", role, actor), form)
        if issued is not None:
            link = url_for("team.join", token=issued.token, _external=True)
            emailed = service.email_invite(issued, link, actor)
            page = render_template("team/invite_created.html", invite=issued.invite, link=link, emailed=emailed)
            return make_response(page, 201, NO_STORE)
    return _team_page(invite_form=form, status=422)


@bp.post("/team/invites/<int:invite_id>/revoke")
@tenant_admin_required
def revoke_invite(invite_id: int) -> Response:
    invite = service.get_invite(int(current_user.tenant_id), invite_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    if commit_or_report(lambda: service.revoke_invite(invite, _actor())):
        flash(_("The invitation to %(email)s is withdrawn.", email=invite.email), "info")
    return redirect(url_for("team.team"))


@bp.post("/team/members")
@tenant_admin_required
def create_member() -> Response | tuple[str, int]:
    form = MemberCreateForm()
    if form.validate_on_submit():
        tenant, actor = _tenant(), _actor()
        user = commit_or_report(lambda: service.create_member(tenant, UserCreate(
            email=form.email.data or "", name=form.name.data or "", password=form.password.data or "",
            role=form.role.data), actor), form)
        if user is not None:
            flash(_("%(email)s can sign in now.", email=user.email), "info")
            return redirect(url_for("team.team"))
    return _team_page(create_form=form, status=422)


@bp.post("/team/members/<int:user_id>/role")
@tenant_admin_required
def change_role(user_id: int) -> Response:
    member = service.get_member(int(current_user.tenant_id), user_id)
    form = RoleForm()
    if not form.validate_on_submit():
        abort(400)
    if commit_or_report(lambda: service.change_role(member, UserRole(form.role.data), _actor())):
        flash(_("%(email)s is now %(role)s.", email=member.email, role=value_label(member.role)), "info")
    return redirect(url_for("team.team"))


@bp.post("/team/members/<int:user_id>/remove")
@tenant_admin_required
def remove_member(user_id: int) -> Response:
    member = service.get_member(int(current_user.tenant_id), user_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    if commit_or_report(lambda: service.remove_member(member, _actor())):
        flash(_("%(email)s is removed and signed out.", email=member.email), "info")
    return redirect(url_for("team.team"))


# ---------------------------------------------------------------- accepting an invitation (no sign-in)


def _join_page(token: str, form: AcceptInviteForm, status: int = 200) -> Response:
    try:
        invite = service.pending_invite_for_token(token)
    except ApiError as exc:
        page = render_template("team/join_invalid.html", message=exc.message)
        return make_response(page, exc.status, NO_STORE)
    page = render_template("team/join.html", invite=invite, form=form, token=token, now=utcnow())
    return make_response(page, status, NO_STORE)


@bp.get("/team/join/<string:token>")
def join(token: str) -> Response:
    return _join_page(token, AcceptInviteForm())


@bp.post("/team/join/<string:token>")
def accept(token: str) -> Response:
    form = AcceptInviteForm()
    if form.validate_on_submit():
        try:
            user = service.accept_invite(token, form.name.data or "", form.password.data or "")
            db.session.commit()
        except ApiError as exc:
            db.session.rollback()
            page = render_template("team/join_invalid.html", message=exc.message)
            return make_response(page, exc.status, NO_STORE)
        flash(_("Welcome! Sign in as %(email)s.", email=user.email), "info")
        return redirect(url_for("auth.login"))
    return _join_page(token, form, 422)
