"""The platform's data model (SQLAlchemy 2.0 typed)."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
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
    CALLBACK = "callback"  # LiteLLM's own logging callback (generic_api) posting its events to us


class BillingMode(enum.StrEnum):
    POSTPAID = "postpaid"
    PREPAID = "prepaid"


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
    # Most completions one /v1 request may ask for (`n`, `best_of`); None: OpenAI's own ceiling.
    max_n: Mapped[int | None]
    # The markup of the plan's latest price book version (pricing reads only `price_book_versions`).
    markup_percent: Mapped[Decimal] = mapped_column(sa.Numeric(7, 2), default=Decimal("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Billing (issue 11): prices, fees and the usage `price` columns are in this currency.
    currency: Mapped[str] = mapped_column(sa.String(3), default="USD", server_default="USD")
    billing_mode: Mapped[BillingMode] = mapped_column(
        _enum_column(BillingMode), default=BillingMode.POSTPAID, server_default=BillingMode.POSTPAID.value
    )
    monthly_fee: Mapped[Decimal | None] = mapped_column(MONEY)

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


PRICE_BOOK_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PriceBookVersion(Base):
    """One version of a plan's prices, in force from `effective_from` until the next version's. Never
    changed once committed: a price change adds a version (webapp.billing.price_book)."""

    __tablename__ = "price_book_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(sa.ForeignKey("plans.id"))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    markup_percent: Mapped[Decimal] = mapped_column(sa.Numeric(7, 2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    model_prices: Mapped[list[ModelPrice]] = relationship(
        order_by="ModelPrice.model", cascade="all, delete-orphan", lazy="selectin"
    )
    created_by: Mapped[User | None] = relationship()

    __table_args__ = (sa.UniqueConstraint("plan_id", "effective_from", name="uq_price_book_versions_plan_from"),)


class ModelPrice(Base):
    """A per-model price of one version: per million input and output tokens, in the plan's currency."""

    __tablename__ = "model_prices"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("price_book_versions.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(255))
    input_per_million: Mapped[Decimal] = mapped_column(MONEY)
    output_per_million: Mapped[Decimal] = mapped_column(MONEY)

    __table_args__ = (sa.UniqueConstraint("version_id", "model", name="uq_model_prices_version_model"),)


@sa.event.listens_for(Plan, "after_insert")
def _first_price_book_version(mapper: Any, connection: sa.Connection, plan: Plan) -> None:
    """A plan always has a price book: its first version (the plan's markup, no per-model prices) prices
    everything from the epoch on, whoever inserted the plan (service, demo data, tests)."""
    connection.execute(
        sa.insert(PriceBookVersion.__table__).values(  # type: ignore[arg-type]
            plan_id=plan.id,
            effective_from=PRICE_BOOK_EPOCH,
            markup_percent=plan.markup_percent if plan.markup_percent is not None else Decimal("0"),
            created_at=utcnow(),
        )
    )


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    status: Mapped[TenantStatus] = mapped_column(_enum_column(TenantStatus), default=TenantStatus.ACTIVE)
    plan_id: Mapped[int | None] = mapped_column(sa.ForeignKey("plans.id"))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON_DOC, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Billing (issue 11): invoices are in billing_currency, taxed at tax_rate_percent; the name, address
    # and tax id are copied onto each invoice when it is built.
    billing_currency: Mapped[str] = mapped_column(sa.String(3), default="USD", server_default="USD")
    tax_rate_percent: Mapped[Decimal] = mapped_column(sa.Numeric(5, 2), default=Decimal("0"), server_default="0")
    tax_id: Mapped[str | None] = mapped_column(sa.String(64))
    billing_name: Mapped[str | None] = mapped_column(sa.String(200))
    billing_address: Mapped[str | None] = mapped_column(sa.Text)
    low_balance_threshold: Mapped[Decimal | None] = mapped_column(MONEY)

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
    # Part of every session and remember-me cookie; bumping it (logout, password change) ends them all.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    # The user's chosen UI language (webapp.i18n.SUPPORTED_LOCALES); None follows the browser's Accept-Language.
    locale: Mapped[str | None] = mapped_column(sa.String(8), default=None)

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

    def new_login_id(self) -> str:
        """Flask-Login's id for a new sign-in (its `id_attribute`); see webapp.auth.sessions."""
        from webapp.auth.sessions import new_login_id

        return new_login_id(self)


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
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # NULL: a legacy token, no expiry

    user: Mapped[User] = relationship()

    def status_at(self, moment: datetime) -> str:
        if self.revoked_at is not None and self.revoked_at <= moment:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= moment:
            return "expired"
        return "active"


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


# How our proxy's request ids begin (webapp.proxy.service sends them to LiteLLM as the call id).
PROXY_REQUEST_ID_PREFIX = "a1req-"
CALL_ID_UNIQUE_WHERE = f"call_id LIKE '{PROXY_REQUEST_ID_PREFIX}%' OR request_id LIKE '%cache_hit%'"


class UsageLog(Base):
    """One request's usage. On PostgreSQL the table is range-partitioned by month on `occurred_at` (migration
    0010, webapp.usage.partitions): its primary key there is (id, occurred_at) and the unique keys below live
    in `usage_log_ids`; this mapping describes the plain table SQLite keeps. `id` comes from one sequence,
    so it stays unique either way."""

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
    # What the tenant pays, in its plan's currency (0 while the row has no tenant); the version it used.
    price: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"), server_default="0")
    price_version_id: Mapped[int | None]
    response_time_ms: Mapped[int | None]
    status_code: Mapped[int] = mapped_column(default=200)
    extra: Mapped[dict[str, Any]] = mapped_column("metadata", JSON_DOC, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # LiteLLM's litellm_call_id (our proxy sends its own request id as it): the second key a request is
    # counted once by. NULL on rows stored before it was kept.
    call_id: Mapped[str | None] = mapped_column(sa.String(255))
    # The proxy could only estimate this row (stream cut before its usage, unknown price, upstream timeout);
    # LiteLLM's row for the same request replaces its numbers (webapp.usage.recording).
    provisional: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    __table_args__ = (
        sa.Index("ix_usage_logs_tenant_time", "tenant_id", "occurred_at"),
        sa.Index("ix_usage_logs_key_time", "api_key_id", "occurred_at"),
        # Token alone: its readers (attribution, key mapping) never range over time, and a one-column
        # btree deduplicates the repeated token, so it is smaller and cheaper to keep up.
        sa.Index("ix_usage_logs_litellm_key", "litellm_key_id"),
        sa.Index("ix_usage_logs_occurred_at", "occurred_at"),
        # Unique where a call id can tie two reports of one request that carry different request ids: our
        # proxy's ids (its row vs LiteLLM's) and cache hits (LiteLLM suffixes the id separately in its spend
        # row and its callback event). Other LiteLLM rows dedupe on request_id alone, so a bulk import of
        # direct traffic maintains one unique index per row, not two.
        sa.Index(
            "uq_usage_logs_call_id",
            "call_id",
            unique=True,
            postgresql_where=sa.text(CALL_ID_UNIQUE_WHERE),
            sqlite_where=sa.text(CALL_ID_UNIQUE_WHERE),
        ),
        # Provisional rows are few: this stays tiny, and a LiteLLM batch reads the ones of its time span.
        sa.Index(
            "ix_usage_logs_provisional",
            "occurred_at",
            postgresql_where=sa.text("provisional"),
            sqlite_where=sa.text("provisional"),
        ),
        # PostgreSQL's numeric takes NaN, which would turn every rollup sum it reaches into NaN for good.
        sa.CheckConstraint("cost <> 'NaN'", name="cost_is_a_number"),
    )


class UsageLogId(Base):
    """(PostgreSQL) The unique keys of the partitioned `usage_logs`, which cannot hold a unique index without
    the partition key: one row per usage row, claimed in the statement that inserts it. Same definitions as
    the plain table's (request_id, and call_id where CALL_ID_UNIQUE_WHERE). Empty on SQLite."""

    __tablename__ = "usage_log_ids"

    request_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    call_id: Mapped[str | None] = mapped_column(sa.String(255))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.Index(
            "uq_usage_log_ids_call_id",
            "call_id",
            unique=True,
            postgresql_where=sa.text(CALL_ID_UNIQUE_WHERE),
            sqlite_where=sa.text(CALL_ID_UNIQUE_WHERE),
        ),
    )


class UsageDeadLetter(Base):
    """A usage record the database rejected even after its text fields were fitted to their columns:
    kept whole (staff see it on /staff/sync and at /api/admin/usage-dead-letters) instead of blocking
    the records written with it."""

    __tablename__ = "usage_dead_letters"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(255))
    source: Mapped[str] = mapped_column(sa.String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON_DOC)
    error: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


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
    price: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"), server_default="0")
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


# ---------------------------------------------------------------- billing: ledger, fx rates, invoices (issue 11)


class LedgerEntryKind(enum.StrEnum):
    TOPUP = "topup"
    USAGE = "usage"
    ADJUSTMENT = "adjustment"
    REFUND = "refund"


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"


class InvoiceKind(enum.StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


class InvoiceLineKind(enum.StrEnum):
    USAGE = "usage"
    FEE = "fee"
    ADJUSTMENT = "adjustment"


class CreditLedgerEntry(Base):
    """One movement of a tenant's prepaid credit; the balance is the sum of the amounts.

    Append-only: webapp.billing.ledger only inserts, and on PostgreSQL a trigger rejects UPDATE and DELETE.
    Usage debits cover [period_start, period_end), unique per tenant, so a re-run never debits twice.
    """

    __tablename__ = "credit_ledger_entries"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id"))
    kind: Mapped[LedgerEntryKind] = mapped_column(_enum_column(LedgerEntryKind))
    amount: Mapped[Decimal] = mapped_column(MONEY)  # signed: top-ups positive, usage debits negative
    currency: Mapped[str] = mapped_column(sa.String(3))
    reference: Mapped[str] = mapped_column(sa.String(255), default="")
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    created_by: Mapped[User | None] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "period_start", "period_end", name="uq_credit_ledger_entries_usage_period"),
        sa.Index("ix_credit_ledger_entries_tenant_created", "tenant_id", "created_at"),
        sa.CheckConstraint(
            "kind != 'usage' OR (period_start IS NOT NULL AND period_end IS NOT NULL AND period_start < period_end)",
            name="usage_has_period",
        ),
    )


class FxRate(Base):
    """Staff-entered exchange rate: 1 `base` = `rate` `quote`, in force from `effective_from` on."""

    __tablename__ = "fx_rates"

    id: Mapped[int] = mapped_column(primary_key=True)
    base: Mapped[str] = mapped_column(sa.String(3))
    quote: Mapped[str] = mapped_column(sa.String(3))
    rate: Mapped[Decimal] = mapped_column(sa.Numeric(20, 10))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    __table_args__ = (
        sa.UniqueConstraint("base", "quote", "effective_from", name="uq_fx_rates_pair_effective"),
        sa.CheckConstraint("rate > 0", name="rate_positive"),
    )


class Invoice(Base):
    """A tenant's monthly invoice (or a credit note against one). Drafts are rebuilt freely; a finalized
    invoice has its gapless number and never changes again."""

    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id"))
    month: Mapped[date] = mapped_column(sa.Date())  # the 1st of the billed month
    kind: Mapped[InvoiceKind] = mapped_column(_enum_column(InvoiceKind), default=InvoiceKind.INVOICE)
    status: Mapped[InvoiceStatus] = mapped_column(_enum_column(InvoiceStatus), default=InvoiceStatus.DRAFT)
    number: Mapped[str | None] = mapped_column(sa.String(40), unique=True)
    credits_invoice_id: Mapped[int | None] = mapped_column(sa.ForeignKey("invoices.id"))
    currency: Mapped[str] = mapped_column(sa.String(3))
    source_currency: Mapped[str] = mapped_column(sa.String(3))  # the plan's currency usage is priced in
    fx_rate: Mapped[Decimal] = mapped_column(sa.Numeric(20, 10), default=Decimal("1"))
    subtotal: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    tax: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    total: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    credits_applied: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))  # prepaid usage, already paid
    tax_rate: Mapped[Decimal] = mapped_column(sa.Numeric(5, 2), default=Decimal("0"))
    tax_id: Mapped[str | None] = mapped_column(sa.String(64))
    billing_name: Mapped[str] = mapped_column(sa.String(200), default="")
    billing_address: Mapped[str] = mapped_column(sa.Text, default="")
    reason: Mapped[str] = mapped_column(sa.Text, default="")  # why a credit note was issued
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finalized_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    tenant: Mapped[Tenant] = relationship()
    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position", cascade="all, delete-orphan"
    )

    __table_args__ = (
        sa.Index("ix_invoices_month_status", "month", "status"),
        sa.Index("ix_invoices_tenant_month", "tenant_id", "month"),
        # One invoice per tenant and month (credit notes aside), so concurrent builds cannot double it.
        sa.Index(
            "uq_invoices_tenant_month_invoice",
            "tenant_id",
            "month",
            unique=True,
            postgresql_where=sa.text("kind = 'invoice'"),
            sqlite_where=sa.text("kind = 'invoice'"),
        ),
        sa.CheckConstraint("status = 'draft' OR number IS NOT NULL", name="finalized_has_number"),
    )

    @property
    def amount_due(self) -> Decimal:
        return self.total - self.credits_applied


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    kind: Mapped[InvoiceLineKind] = mapped_column(_enum_column(InvoiceLineKind))
    description: Mapped[str] = mapped_column(sa.String(255))
    model: Mapped[str] = mapped_column(sa.String(255), default="")
    requests: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # Exact sum in the plan's currency, then `amount`: converted and rounded half-even once, in the invoice's.
    source_amount: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    amount: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    period_start: Mapped[date] = mapped_column(sa.Date())
    period_end: Mapped[date] = mapped_column(sa.Date())  # inclusive last day

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class InvoiceNumberSequence(Base):
    """Last number issued per year; finalizing locks the row, so numbers are gapless and never reused."""

    __tablename__ = "invoice_number_sequences"

    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(default=0)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookEndpoint(Base):
    """Where signed event notifications go: a tenant's endpoint, or a staff endpoint (`tenant_id` NULL)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tenants.id"), index=True)
    url: Mapped[str] = mapped_column(sa.String(2048))
    description: Mapped[str] = mapped_column(sa.String(200), default="")
    events: Mapped[list[str]] = mapped_column(JSON_DOC, default=list)
    # We sign with the secret, so it is stored encrypted (Fernet), not hashed.
    secret_encrypted: Mapped[str] = mapped_column(sa.Text)
    secret_prefix: Mapped[str] = mapped_column(sa.String(16))
    enabled: Mapped[bool] = mapped_column(default=True)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(500))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    tenant: Mapped[Tenant | None] = relationship()


class WebhookMessage(Base):
    """The outbox: one row per event, written in the transaction of the change it reports."""

    __tablename__ = "webhook_messages"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(40), unique=True)  # the `webhook-id` header
    event_type: Mapped[str] = mapped_column(sa.String(64))
    tenant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tenants.id"), index=True)
    body: Mapped[str] = mapped_column(sa.Text)  # the exact JSON sent (and signed) on every attempt
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.Index(
            "ix_webhook_messages_undispatched",
            "id",
            postgresql_where=sa.text("dispatched_at IS NULL"),
            sqlite_where=sa.text("dispatched_at IS NULL"),
        ),
    )


class WebhookDelivery(Base):
    """One message to one endpoint, retried with backoff until it succeeds or the schedule runs out."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_messages.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    status: Mapped[DeliveryStatus] = mapped_column(_enum_column(DeliveryStatus), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    message: Mapped[WebhookMessage] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship()

    __table_args__ = (
        sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        sa.Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
    )


class WebhookAttempt(Base):
    """The delivery log: one row per HTTP attempt."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status_code: Mapped[int | None]
    duration_ms: Mapped[int] = mapped_column(default=0)
    response_body: Mapped[str | None] = mapped_column(sa.Text)  # truncated
    error: Mapped[str | None] = mapped_column(sa.String(500))


class EmailNotification(Base):
    """One event by email to one user; sent by the same worker as the webhooks."""

    __tablename__ = "email_notifications"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_messages.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    to_address: Mapped[str] = mapped_column(sa.String(254))
    status: Mapped[DeliveryStatus] = mapped_column(_enum_column(DeliveryStatus), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.Index(
            "ix_email_notifications_due",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
    )


class NotificationPreference(Base):
    """A user's email choice for one event type (no row: emails on)."""

    __tablename__ = "notification_preferences"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(sa.String(64))
    email: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        sa.UniqueConstraint("user_id", "event_type", name="uq_notification_preferences_user_event"),
    )


class EventMark(Base):
    """Names of events already emitted, so scheduled checks report each fact once
    (e.g. 'budget:12:2026-11:80', 'key.expiring:34', 'unmapped:<token>')."""

    __tablename__ = "event_marks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TeamInvite(Base):
    """A tenant admin's invitation to join the tenant: a one-time link whose token is stored only as sha256."""

    __tablename__ = "team_invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id"), index=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    role: Mapped[UserRole] = mapped_column(_enum_column(UserRole))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))  # the account made on acceptance

    tenant: Mapped[Tenant] = relationship()

    def status_at(self, moment: datetime) -> str:
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= moment:
            return "expired"
        return "pending"


class ImmutableRecordError(Exception):
    """An attempt to change a ledger entry or a finalized invoice (the database refuses it as well)."""


@sa.event.listens_for(CreditLedgerEntry, "before_update")
@sa.event.listens_for(CreditLedgerEntry, "before_delete")
def _ledger_is_append_only(mapper: Any, connection: sa.Connection, entry: CreditLedgerEntry) -> None:
    raise ImmutableRecordError(f"credit ledger entry {entry.id} is append-only; add a new entry instead")


@sa.event.listens_for(Invoice, "before_update")
@sa.event.listens_for(Invoice, "before_delete")
def _finalized_invoice_is_immutable(mapper: Any, connection: sa.Connection, invoice: Invoice) -> None:
    history = sa.inspect(invoice).attrs.status.history
    was = history.deleted[0] if history.deleted else invoice.status
    if was == InvoiceStatus.FINALIZED:
        raise ImmutableRecordError(f"invoice {invoice.number} is finalized; issue a credit note instead")
