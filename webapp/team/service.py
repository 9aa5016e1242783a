"""Team management rules: invitations (hashed one-time tokens that expire), roles, removal.

A tenant always keeps at least one active admin, and nobody removes or re-roles themselves, so an admin can
never lock the tenant out by accident. Removal deactivates (usage and audit rows keep their author) and ends
the user's sessions; personal tokens of inactive users are refused already (webapp.auth.service).
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage

import sqlalchemy as sa
from flask import abort, current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from webapp.audit import record_audit
from webapp.auth import sessions
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.i18n import value_label
from webapp.models import TeamInvite, Tenant, User, UserRole, utcnow
from webapp.security import generate_secret, hash_secret
from webapp.tenants.schemas import UserCreate
from webapp.tenants.service import create_tenant_user
from webapp.webhooks import mail

log = logging.getLogger(__name__)

INVITE_TOKEN_PREFIX = "a1inv-"
TEAM_ROLES = (UserRole.ADMIN, UserRole.MEMBER)
INVALID_INVITE = _l("This invitation link is not valid: it may have expired, been used or been withdrawn.")
SELF_CHANGES = {"change the role of": _l("You cannot change the role of yourself; ask another admin."),
                "remove": _l("You cannot remove yourself; ask another admin.")}


@dataclass(frozen=True)
class IssuedInvite:
    invite: TeamInvite
    token: str  # shown to the inviting admin once and emailed; only its hash is stored


def _field_error(field: str, message: str, status: int = 422, code: str = "validation_error") -> ApiError:
    return ApiError(status, message, code, {field: message})


def _email_in_use(email: str) -> bool:
    return db.session.scalar(sa.select(User.id).where(sa.func.lower(User.email) == email.lower())) is not None


# ---------------------------------------------------------------- members


def list_members(tenant_id: int) -> list[User]:
    query = sa.select(User).where(User.tenant_id == tenant_id).order_by(User.active.desc(), User.email)
    return list(db.session.scalars(query))


def get_member(tenant_id: int, user_id: int) -> User:
    """A user of this tenant; any other id (another tenant's, staff, unknown) is 404."""
    user = db.session.scalar(sa.select(User).where(User.id == user_id, User.tenant_id == tenant_id))
    if user is None:
        abort(404)
    return user


def create_member(tenant: Tenant, data: UserCreate, actor: User) -> User:
    return create_tenant_user(tenant, data, actor)


def _other_active_admins(member: User) -> int:
    """Active admins of the member's tenant besides the member, counted with their rows locked so two
    concurrent demotions cannot both pass."""
    admins = db.session.scalars(
        sa.select(User.id)
        .where(User.tenant_id == member.tenant_id, User.role == UserRole.ADMIN, User.active.is_(True))
        .with_for_update()
    )
    return sum(1 for admin_id in admins if admin_id != member.id)


def _require_not_self(member: User, actor: User, what: str) -> None:
    if member.id == actor.id:
        raise ApiError(409, str(SELF_CHANGES[what]), "self_change")


def change_role(member: User, role: UserRole, actor: User) -> User:
    if role not in TEAM_ROLES:
        raise _field_error("role", _("Choose admin or member."))
    _require_not_self(member, actor, "change the role of")
    if member.role == UserRole.ADMIN and role != UserRole.ADMIN and _other_active_admins(member) == 0:
        raise ApiError(409, _("The team needs at least one admin."), "last_admin")
    previous = member.role
    member.role = role
    record_audit(actor, "user.role", "user", member.id, tenant_id=member.tenant_id,
                 details={"from": previous.value, "to": role.value})
    return member


def remove_member(member: User, actor: User) -> User:
    _require_not_self(member, actor, "remove")
    if member.role == UserRole.ADMIN and member.active and _other_active_admins(member) == 0:
        raise ApiError(409, _("The team needs at least one admin."), "last_admin")
    member.active = False
    sessions.end_every_session(member)
    record_audit(actor, "user.remove", "user", member.id, tenant_id=member.tenant_id, details={"email": member.email})
    return member


# ---------------------------------------------------------------- invitations


def invite_lifetime() -> timedelta:
    return timedelta(hours=int(current_app.config["TEAM_INVITE_HOURS"]))


def list_pending_invites(tenant_id: int) -> list[TeamInvite]:
    now = utcnow()
    query = (
        sa.select(TeamInvite)
        .where(TeamInvite.tenant_id == tenant_id, TeamInvite.accepted_at.is_(None), TeamInvite.revoked_at.is_(None),
               TeamInvite.expires_at > now)
        .order_by(TeamInvite.created_at.desc())
    )
    return list(db.session.scalars(query))


def get_invite(tenant_id: int, invite_id: int) -> TeamInvite:
    invite = db.session.scalar(
        sa.select(TeamInvite).where(TeamInvite.id == invite_id, TeamInvite.tenant_id == tenant_id)
    )
    if invite is None:
        abort(404)
    return invite


def create_invite(tenant: Tenant, email: str, role: UserRole, actor: User) -> IssuedInvite:
    """A new one-time link; an earlier pending invitation of the same address to this tenant is withdrawn."""
    email = email.strip().lower()
    if role not in TEAM_ROLES:
        raise _field_error("role", _("Choose admin or member."))
    if _email_in_use(email):
        raise _field_error("email", _("Someone with this email already has an account."))
    now = utcnow()
    for earlier in list_pending_invites(tenant.id):
        if earlier.email == email:
            earlier.revoked_at = now
    token = generate_secret(INVITE_TOKEN_PREFIX)
    invite = TeamInvite(tenant_id=tenant.id, email=email, role=role, token_hash=hash_secret(token),
                        created_by_id=actor.id, created_at=now, expires_at=now + invite_lifetime())
    db.session.add(invite)
    db.session.flush()
    record_audit(actor, "invite.create", "team_invite", invite.id, tenant_id=tenant.id,
                 details={"email": email, "role": role.value})
    return IssuedInvite(invite=invite, token=token)


def revoke_invite(invite: TeamInvite, actor: User) -> TeamInvite:
    if invite.status_at(utcnow()) != "pending":
        raise ApiError(409, _("Only a pending invitation can be withdrawn."), "not_pending")
    invite.revoked_at = utcnow()
    record_audit(actor, "invite.revoke", "team_invite", invite.id, tenant_id=invite.tenant_id)
    return invite


def pending_invite_for_token(token: str, lock: bool = False) -> TeamInvite:
    """The usable invitation behind a link; unknown, expired, used and withdrawn links all answer 404 alike."""
    query = sa.select(TeamInvite).where(TeamInvite.token_hash == hash_secret(token.strip()))
    invite = db.session.scalar(query.with_for_update() if lock else query)
    if invite is None or invite.status_at(utcnow()) != "pending" or not invite.tenant.is_active:
        raise ApiError(404, str(INVALID_INVITE), "invalid_invite")
    return invite


def accept_invite(token: str, name: str, password: str) -> User:
    """Create the invited account; the row lock makes a link usable exactly once, even when raced."""
    invite = pending_invite_for_token(token, lock=True)
    if _email_in_use(invite.email):
        raise ApiError(409, _("Someone with this email already has an account; sign in instead."), "email_taken")
    user = User(email=invite.email, name=name.strip(), role=invite.role, tenant_id=invite.tenant_id)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    invite.accepted_at = utcnow()
    invite.user_id = user.id
    record_audit(user, "invite.accept", "team_invite", invite.id, tenant_id=invite.tenant_id,
                 details={"email": invite.email})
    return user


def email_invite(issued: IssuedInvite, link: str, inviter: User) -> bool:
    """Send the link when MAIL_SERVER is set (with the notification mailer's SMTP settings); False when
    email is off or sending failed (the admin still has the link on screen)."""
    settings = mail.mail_settings()
    if settings is None:
        return False
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = issued.invite.email
    # The invitee has no account (and no language setting) yet: the email speaks the inviting admin's language.
    team = issued.invite.tenant.name
    message["Subject"] = f"{mail.SUBJECT_PREFIX} " + _("You are invited to %(team)s", team=team)
    hours = int(invite_lifetime().total_seconds() // 3600)
    message.set_content(
        _("%(inviter)s invited you to join %(team)s on A1 SaaS Pro as %(role)s.",
          inviter=inviter.name or inviter.email, team=team, role=value_label(issued.invite.role))
        + "\n\n" + _("Set your name and password here (the link works once, for %(hours)s hours):", hours=hours)
        + f"\n{link}\n\n" + _("If you did not expect this, ignore this email.") + "\n"
    )
    try:
        with mail._connect(settings) as smtp:
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("invitation email to invite %s failed: %s", issued.invite.id, type(exc).__name__)
        return False
    return True
