"""The platform's data model (SQLAlchemy 2.0 typed)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.extensions import Base

MONEY = sa.Numeric(20, 10)
LATENCY_BUCKET_BOUNDS_MS = (100, 250, 500, 1000, 2500, 5000, 10000, None)  # None: above the last bound
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        return (
            value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)
        )

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class UserRole(enum.StrEnum):
    STAFF = "staff"
    ADMIN = "admin"
    MEMBER = "member"


class UsageSource(enum.StrEnum):
    PROXY = "proxy"
    SYNC = "sync"


class SyncKind(enum.StrEnum):
    BULK = "bulk"
    INCREMENTAL = "incremental"


class SyncStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _enum_column(enum_cls: type[enum.Enum], length: int = 16) -> sa.Enum:
    return sa.Enum(
        enum_cls,
        native_enum=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    rpm_limit: Mapped[int | None]
    tpm_limit: Mapped[int | None]
    monthly_budget: Mapped[Decimal | None] = mapped_column(MONEY)
    allowed_models: Mapped[list[str]] = mapped_column(JSON_DOC, default=list)
    markup_percent: Mapped[Decimal] = mapped_column(sa.Numeric(7, 2), default=Decimal("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    status: Mapped[TenantStatus] = mapped_column(_enum_column(TenantStatus), default=TenantStatus.ACTIVE)
    plan_id: Mapped[int | None] = mapped_column(sa.ForeignKey("plans.id"))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON_DOC, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    plan: Mapped[Plan | None] = relationship(lazy="joined")

    @property
    def is_active(self) -> bool:
        return self.status == TenantStatus.ACTIVE


class User(UserMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120), default="")
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    role: Mapped[UserRole] = mapped_column(_enum_column(UserRole))
    tenant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tenants.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    tenant: Mapped[Tenant | None] = relationship()

    __table_args__ = (
        sa.CheckConstraint(
            "(role = 'staff' AND tenant_id IS NULL) OR (role != 'staff' AND tenant_id IS NOT NULL)",
            name="role_matches_tenant",
        ),
    )

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)  # scrypt, werkzeug's current default

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_staff(self) -> bool:
        return self.role == UserRole.STAFF

    @property
    def is_tenant_admin(self) -> bool:
        return self.role == UserRole.ADMIN

    @property
    def is_active(self) -> bool:  # Flask-Login reads this
        return self.active


class PersonalToken(Base):
    """Personal API token for the REST API; only its sha256 is stored."""

    __tablename__ = "personal_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    prefix: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


class ApiKey(Base):
    """A tenant's key for our /v1 proxy; behind it stands one LiteLLM virtual key."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    prefix: Mapped[str] = mapped_column(sa.String(24))
    # NULL for LiteLLM keys imported and mapped by staff: we never learn their secret.
    secret_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    litellm_key_id: Mapped[str | None] = mapped_column(sa.String(128), unique=True)
    litellm_key_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    allowed_models: Mapped[list[str]] = mapped_column(JSON_DOC, default=list)
    rpm_limit: Mapped[int | None]
    tpm_limit: Mapped[int | None]
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    replaced_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_keys.id"))

    tenant: Mapped[Tenant] = relationship()

    def status_at(self, moment: datetime) -> str:
        if self.revoked_at is not None and self.revoked_at <= moment:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= moment:
            return "expired"
        return "active"

    @property
    def status(self) -> str:
        return self.status_at(utcnow())


class LiteLLMKey(Base):
    """Every LiteLLM virtual-key token we know of, ours or imported, and whom its usage belongs to.

    Rotation gives a key a new token while old spend rows keep the old one, so tokens live here
    rather than only on `api_keys`.
    """

    __tablename__ = "litellm_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(sa.String(128), unique=True)
    key_alias: Mapped[str | None] = mapped_column(sa.String(255))
    key_name: Mapped[str | None] = mapped_column(sa.String(64))
    tenant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tenants.id"), index=True)
    api_key_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_keys.id"), index=True)
    origin: Mapped[str] = mapped_column(sa.String(16), default="platform")  # platform | imported
    key_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON_DOC, default=dict)
    litellm_status: Mapped[str | None] = mapped_column(sa.String(16))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    mapped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mapped_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    tenant: Mapped[Tenant | None] = relationship()


class UsageLog(Base):
    __tablename__ = "usage_logs"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    tenant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tenants.id"))
    api_key_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_keys.id"))
    source: Mapped[UsageSource] = mapped_column(_enum_column(UsageSource, 8))
    litellm_key_id: Mapped[str | None] = mapped_column(sa.String(128))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model: Mapped[str] = mapped_column(sa.String(255), default="")
    endpoint: Mapped[str] = mapped_column(sa.String(255), default="")
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    total_tokens: Mapped[int] = mapped_column(default=0)
    cost: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    response_time_ms: Mapped[int | None]
    status_code: Mapped[int] = mapped_column(default=200)
    extra: Mapped[dict[str, Any]] = mapped_column("metadata", JSON_DOC, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        sa.Index("ix_usage_logs_tenant_time", "tenant_id", "occurred_at"),
        sa.Index("ix_usage_logs_key_time", "api_key_id", "occurred_at"),
        # Token alone: its readers (attribution, key mapping) never range over time, and a one-column
        # btree deduplicates the repeated token, so it is smaller and cheaper to keep up.
        sa.Index("ix_usage_logs_litellm_key", "litellm_key_id"),
        sa.Index("ix_usage_logs_occurred_at", "occurred_at"),
    )


class UsageRollup(Base):
    """Pre-aggregated usage per hour and per day; 0 stands for 'no tenant/key' so the bucket key is unique.

    `granularity` names the level (webapp.usage.recording.ROLLUP_LEVELS): 'hour'/'day' per tenant, key and
    model; 'thr'/'tday' per tenant and model; 'mhr'/'mday' per model; 'uhr'/'uday' per unmapped LiteLLM key
    (the token is kept in `model`)."""

    __tablename__ = "usage_rollups"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    granularity: Mapped[str] = mapped_column(sa.String(4))
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime())
    tenant_id: Mapped[int] = mapped_column(default=0)
    api_key_id: Mapped[int] = mapped_column(default=0)
    model: Mapped[str] = mapped_column(sa.String(255), default="")
    requests: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    errors: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    cost: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    latency_ms_sum: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # Latency histogram (upper bounds in LATENCY_BUCKET_BOUNDS_MS) so p50/p95 come from rollups too.
    latency_b0: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_b1: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_b2: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_b3: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_b4: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_b5: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_b6: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_b7: Mapped[int] = mapped_column(sa.BigInteger, default=0)

    __table_args__ = (
        sa.UniqueConstraint(
            "granularity", "bucket_start", "tenant_id", "api_key_id", "model", name="uq_usage_rollups_bucket"
        ),
        sa.Index("ix_usage_rollups_tenant_bucket", "granularity", "tenant_id", "bucket_start"),
    )


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[SyncKind] = mapped_column(_enum_column(SyncKind))
    status: Mapped[SyncStatus] = mapped_column(_enum_column(SyncStatus), default=SyncStatus.RUNNING)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    # Everything before `cursor` is stored; a failed run leaves it where its data ends.
    cursor: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pages: Mapped[int] = mapped_column(default=0)
    fetched: Mapped[int] = mapped_column(default=0)
    inserted: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)
    unmapped: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    triggered_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    __table_args__ = (sa.Index("ix_sync_runs_kind_started", "kind", "started_at"),)

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def progress(self) -> float:
        span = (self.window_end - self.window_start).total_seconds()
        if self.status != SyncStatus.RUNNING:
            return 1.0
        if self.cursor is None or span <= 0:
            return 0.0
        return max(0.0, min(1.0, (self.cursor - self.window_start).total_seconds() / span))


class AuditLog(Base):
    __tablename__ = "audit_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    tenant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tenants.id"), index=True)
    action: Mapped[str] = mapped_column(sa.String(64))
    target_type: Mapped[str] = mapped_column(sa.String(32))
    target_id: Mapped[str | None] = mapped_column(sa.String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON_DOC, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    actor: Mapped[User | None] = relationship()
