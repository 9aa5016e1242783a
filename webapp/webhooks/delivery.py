"""The delivery worker: outbox -> deliveries (fan-out) -> signed HTTP attempts -> the delivery log.

Runs in the scheduler's thread (every WEBHOOK_POLL_SECONDS) or `flask webhooks deliver`, with its own
session, never in a request. Work is claimed in batches with `FOR UPDATE SKIP LOCKED` (PostgreSQL), so
several processes share the queue without sending one delivery twice: a claim moves the delivery's
`next_attempt_at` past the time the batch can take (a lease) and commits before any HTTP is sent. A worker
killed mid-flight leaves its claimed deliveries pending; another worker picks them up when the lease ends
(at-least-once delivery: receivers dedupe by `webhook-id`, as the Standard Webhooks spec asks).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import urllib3
from flask import Flask, current_app

from webapp.audit import record_audit
from webapp.extensions import db
from webapp.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
    utcnow,
)
from webapp.security import decrypt_secret
from webapp.webhooks import mail
from webapp.webhooks.signing import Signer
from webapp.webhooks.targets import Target, TargetRefused, resolve_target

log = logging.getLogger(__name__)

USER_AGENT = "A1SaaSPro-Webhooks/1.0"
RESPONSE_READ_LIMIT = 64 * 1024  # read at most this much of an answer; a bigger one closes the connection
LOGGED_BODY_CHARS = 1000
ERROR_CHARS = 500
LEASE_MARGIN_SECONDS = 30
MAX_RUN_SECONDS = 50.0  # one run of the job yields after this long; the next run goes on
MAX_POOLS = 512
EXTENSION_KEY = "webhook_sender"
DEFAULT_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,50400"  # as webapp.config: about 31.5 h in all


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    allow_private: bool
    batch_size: int
    concurrency: int
    connect_timeout: float
    read_timeout: float
    retry_delays: tuple[int, ...]  # seconds to wait after failed attempt 1, 2, ...; then the delivery fails
    disable_after: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DeliverySettings:
        return cls(
            allow_private=bool(config.get("WEBHOOK_ALLOW_PRIVATE_TARGETS")),
            batch_size=max(1, int(config.get("WEBHOOK_BATCH_SIZE", 100))),
            concurrency=max(1, int(config.get("WEBHOOK_CONCURRENCY", 10))),
            connect_timeout=float(config.get("WEBHOOK_CONNECT_TIMEOUT", 3.05)),
            read_timeout=float(config.get("WEBHOOK_READ_TIMEOUT", 10.0)),
            retry_delays=parse_schedule(str(config.get("WEBHOOK_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE))),
            disable_after=max(1, int(config.get("WEBHOOK_DISABLE_AFTER_FAILURES", 20))),
        )

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays) + 1

    @property
    def lease(self) -> timedelta:
        """Longer than a whole batch can take when every attempt runs into its timeouts."""
        rounds = math.ceil(self.batch_size / self.concurrency)
        return timedelta(seconds=rounds * (self.connect_timeout + self.read_timeout) + LEASE_MARGIN_SECONDS)

    def retry_delay(self, attempts_made: int) -> timedelta | None:
        """How long to wait after `attempts_made` failed attempts; None when the schedule is spent."""
        if attempts_made > len(self.retry_delays):
            return None
        return timedelta(seconds=self.retry_delays[attempts_made - 1])


def parse_schedule(text: str) -> tuple[int, ...]:
    delays = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    if any(delay < 0 for delay in delays):
        raise ValueError("WEBHOOK_RETRY_SCHEDULE takes non-negative seconds, comma-separated")
    return delays


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    delivery_id: int
    endpoint_id: int
    attempts: int  # made before this one
    event_id: str
    body: str
    url: str
    secret: str | None = field(repr=False)  # None: it cannot be decrypted with the configured keys


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    delivery_id: int
    endpoint_id: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def summary(self) -> str:
        return f"HTTP {self.status_code}" if self.status_code is not None else (self.error or "no answer")


@dataclass
class WorkReport:
    dispatched: int = 0
    attempted: int = 0
    succeeded: int = 0
    emailed: int = 0

    def __str__(self) -> str:
        return (
            f"fanned out {self.dispatched} event(s), {self.attempted} attempt(s) "
            f"({self.succeeded} succeeded), {self.emailed} email(s)"
        )


# ---------------------------------------------------------------- the job


def deliver_webhooks_job() -> None:
    """The scheduled job (the scheduler pushes the app context). A run ends before the next one is due, so a
    long fan-out is worked off run after run instead of one run overlapping the schedule."""
    report = deliver_due(max_seconds=max(1.0, 0.8 * float(current_app.config.get("WEBHOOK_POLL_SECONDS", 5))))
    if report.dispatched or report.attempted or report.emailed:
        log.info("webhooks: %s", report)


def deliver_due(now: datetime | None = None, max_seconds: float = MAX_RUN_SECONDS) -> WorkReport:
    """Fan out new events, then send due deliveries and emails, batch after batch, until nothing is due.

    `now` (tests, tools) stands for the clock when deciding what is due and when to retry."""
    settings = DeliverySettings.from_config(current_app.config)
    sender = get_sender(current_app)
    report = WorkReport()
    deadline = time.monotonic() + max_seconds
    while True:
        moment = now or utcnow()
        dispatched = dispatch_pending(settings.batch_size, moment)
        outcomes = deliver_batch(settings, sender, moment)
        emailed = mail.send_due_emails(settings.batch_size, settings.retry_delays, moment)
        report.dispatched += dispatched
        report.attempted += len(outcomes)
        report.succeeded += sum(outcome.ok for outcome in outcomes)
        report.emailed += emailed
        if not (dispatched or outcomes or emailed) or time.monotonic() > deadline:
            return report


# ---------------------------------------------------------------- fan-out


def dispatch_pending(batch_size: int, now: datetime) -> int:
    """Turn the oldest undispatched events into one delivery per subscribed enabled endpoint (and emails),
    in one transaction with marking them dispatched."""
    statement = (
        sa.select(WebhookMessage.id, WebhookMessage.event_type, WebhookMessage.tenant_id)
        .where(WebhookMessage.dispatched_at.is_(None))
        .order_by(WebhookMessage.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    messages = db.session.execute(statement).all()
    if not messages:
        db.session.rollback()
        return 0
    endpoints = db.session.execute(
        sa.select(WebhookEndpoint.id, WebhookEndpoint.tenant_id, WebhookEndpoint.events).where(WebhookEndpoint.enabled)
    ).all()
    deliveries = [
        {
            "message_id": message_id,
            "endpoint_id": endpoint_id,
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for message_id, event_type, tenant_id in messages
        for endpoint_id, endpoint_tenant_id, events in endpoints
        if event_type in events and endpoint_tenant_id in (None, tenant_id)
    ]
    if deliveries:
        db.session.execute(sa.insert(WebhookDelivery), deliveries)
    mail.queue_emails([(message_id, event_type, tenant_id) for message_id, event_type, tenant_id in messages], now)
    ids = [message_id for message_id, _, _ in messages]
    db.session.execute(sa.update(WebhookMessage).where(WebhookMessage.id.in_(ids)).values(dispatched_at=now))
    db.session.commit()
    return len(messages)


# ---------------------------------------------------------------- delivery


def deliver_batch(settings: DeliverySettings, sender: Sender, now: datetime) -> list[AttemptOutcome]:
    jobs = claim_due_deliveries(settings, now)
    if not jobs:
        return []
    outcomes = sender.send_all(jobs, settings)
    record_outcomes(jobs, outcomes, settings, now)
    return outcomes


def claim_due_deliveries(settings: DeliverySettings, now: datetime) -> list[DeliveryJob]:
    due = (
        sa.select(WebhookDelivery.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            WebhookEndpoint.enabled,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(settings.batch_size)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    ids = list(db.session.scalars(due))
    if not ids:
        db.session.rollback()
        return []
    db.session.execute(
        sa.update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(next_attempt_at=now + settings.lease)
    )
    rows = db.session.execute(
        sa.select(
            WebhookDelivery.id,
            WebhookDelivery.endpoint_id,
            WebhookDelivery.attempts,
            WebhookMessage.event_id,
            WebhookMessage.body,
            WebhookEndpoint.url,
            WebhookEndpoint.secret_encrypted,
        )
        .join(WebhookMessage, WebhookMessage.id == WebhookDelivery.message_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.id)
    ).all()
    db.session.commit()
    secrets: dict[str, str | None] = {}
    for row in rows:
        if row.secret_encrypted not in secrets:
            secrets[row.secret_encrypted] = _decrypted_or_none(row.secret_encrypted)
    return [
        DeliveryJob(
            delivery_id=row.id,
            endpoint_id=row.endpoint_id,
            attempts=row.attempts,
            event_id=row.event_id,
            body=row.body,
            url=row.url,
            secret=secrets[row.secret_encrypted],
        )
        for row in rows
    ]


def _decrypted_or_none(ciphertext: str) -> str | None:
    try:
        return decrypt_secret(ciphertext)
    except ValueError:
        log.error("a webhook endpoint's secret cannot be decrypted: check ENCRYPTION_KEY")
        return None


def record_outcomes(
    jobs: Sequence[DeliveryJob], outcomes: Sequence[AttemptOutcome], settings: DeliverySettings, now: datetime
) -> None:
    """The attempts, the deliveries' new state and the endpoints' failure streaks, in one transaction."""
    attempts_before = {job.delivery_id: job.attempts for job in jobs}
    still_there = set(
        db.session.scalars(
            sa.select(WebhookDelivery.id).where(WebhookDelivery.id.in_(list(attempts_before))).with_for_update()
        )
    )  # an endpoint deleted meanwhile took its deliveries along
    kept = [outcome for outcome in outcomes if outcome.delivery_id in still_there]
    if kept:
        db.session.execute(sa.insert(WebhookAttempt), [_attempt_row(outcome) for outcome in kept])
        _update_deliveries(
            [_delivery_state(outcome, attempts_before[outcome.delivery_id] + 1, settings, now) for outcome in kept]
        )
        _update_failure_streaks(kept, settings)
    db.session.commit()


def _attempt_row(outcome: AttemptOutcome) -> dict[str, Any]:
    return {
        "delivery_id": outcome.delivery_id,
        "attempted_at": outcome.attempted_at,
        "status_code": outcome.status_code,
        "duration_ms": outcome.duration_ms,
        "response_body": outcome.response_body,
        "error": outcome.error,
    }


# One statement for a whole batch on PostgreSQL: arrays of new values, unnested side by side. A text statement
# is compiled once; an UPDATE .. FROM (VALUES ..) construct would be compiled anew for every batch (tens of
# milliseconds of CPU that /v1 requests in the same gevent worker would wait for).
UPDATE_DELIVERIES = sa.text(
    """
    UPDATE webhook_deliveries AS d
    SET attempts = s.attempts, last_attempt_at = s.last_attempt_at, last_status_code = s.last_status_code,
        last_error = s.last_error, status = s.status, delivered_at = s.delivered_at,
        next_attempt_at = s.next_attempt_at
    FROM unnest(CAST(:id AS bigint[]), CAST(:attempts AS integer[]), CAST(:last_attempt_at AS timestamptz[]),
                CAST(:last_status_code AS integer[]), CAST(:last_error AS varchar[]), CAST(:status AS varchar[]),
                CAST(:delivered_at AS timestamptz[]), CAST(:next_attempt_at AS timestamptz[]))
         AS s(id, attempts, last_attempt_at, last_status_code, last_error, status, delivered_at, next_attempt_at)
    WHERE d.id = s.id
    """
)
DELIVERY_STATE_COLUMNS = ("id", "attempts", "last_attempt_at", "last_status_code", "last_error", "status",
                          "delivered_at", "next_attempt_at")


def _delivery_state(
    outcome: AttemptOutcome, attempts: int, settings: DeliverySettings, now: datetime
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "id": outcome.delivery_id,
        "attempts": attempts,
        "last_attempt_at": outcome.attempted_at,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "status": DeliveryStatus.PENDING.value,
        "delivered_at": None,
        "next_attempt_at": None,
    }
    if outcome.ok:
        return state | {"status": DeliveryStatus.SUCCEEDED.value, "delivered_at": outcome.attempted_at}
    delay = settings.retry_delay(attempts)
    if delay is None:
        return state | {"status": DeliveryStatus.FAILED.value}
    return state | {"next_attempt_at": max(now, outcome.attempted_at) + delay}


def _update_deliveries(states: Sequence[dict[str, Any]]) -> None:
    """Every delivery's new state; on PostgreSQL in one statement instead of one per row."""
    if db.session.get_bind().dialect.name != "postgresql":
        rows = [state | {"status": DeliveryStatus(state["status"])} for state in states]
        db.session.execute(sa.update(WebhookDelivery), rows)
        return
    db.session.execute(UPDATE_DELIVERIES, {name: [state[name] for state in states] for name in DELIVERY_STATE_COLUMNS})


def _update_failure_streaks(outcomes: Sequence[AttemptOutcome], settings: DeliverySettings) -> None:
    """A success resets an endpoint's count of consecutive failed attempts; reaching the setting disables it."""
    by_endpoint: dict[int, list[AttemptOutcome]] = {}
    for outcome in sorted(outcomes, key=lambda item: item.attempted_at):
        by_endpoint.setdefault(outcome.endpoint_id, []).append(outcome)
    column = WebhookEndpoint.consecutive_failures
    for endpoint_id, results in sorted(by_endpoint.items()):
        last_success = max((index for index, result in enumerate(results) if result.ok), default=None)
        if last_success is None:
            streak: Any = column + len(results)
        else:
            streak = len(results) - last_success - 1
        db.session.execute(sa.update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(
            consecutive_failures=streak))
        if not results[-1].ok:
            _disable_if_failing(endpoint_id, results[-1], settings)


def _disable_if_failing(endpoint_id: int, last: AttemptOutcome, settings: DeliverySettings) -> None:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
    if endpoint is None or not endpoint.enabled or endpoint.consecutive_failures < settings.disable_after:
        return
    endpoint.enabled = False
    endpoint.disabled_at = last.attempted_at
    endpoint.disabled_reason = (
        f"Disabled automatically after {endpoint.consecutive_failures} consecutive failed attempts; "
        f"last one {last.attempted_at:%Y-%m-%d %H:%M} UTC: {last.summary()}"
    )[:500]
    record_audit(None, "webhook.auto_disable", "webhook_endpoint", endpoint.id, endpoint.tenant_id,
                 {"reason": endpoint.disabled_reason})
    log.warning("webhook endpoint %s disabled: %s", endpoint.id, endpoint.disabled_reason)


# ---------------------------------------------------------------- HTTP


class Sender:
    """Signs and posts attempts; keeps keep-alive pools per checked address and a small thread pool."""

    def __init__(self, concurrency: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook-send")
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()
        self.concurrency = concurrency

    def send_all(self, jobs: Sequence[DeliveryJob], settings: DeliverySettings) -> list[AttemptOutcome]:
        signers: dict[str, Signer] = {}
        for job in jobs:
            if job.secret is not None and job.secret not in signers:
                signers[job.secret] = Signer(job.secret)
        return list(self._executor.map(lambda job: self.send(job, signers.get(job.secret or ""), settings), jobs))

    def send(self, job: DeliveryJob, signer: Signer | None, settings: DeliverySettings) -> AttemptOutcome:
        attempted_at = utcnow()
        started = time.perf_counter()

        def outcome(**fields: Any) -> AttemptOutcome:
            elapsed = int((time.perf_counter() - started) * 1000)
            return AttemptOutcome(job.delivery_id, job.endpoint_id, attempted_at, elapsed, **fields)

        if signer is None:
            return outcome(error="not sent: the endpoint's secret cannot be decrypted (ENCRYPTION_KEY changed?)")
        try:
            target = resolve_target(job.url, settings.allow_private)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Host": target.host_header,
                **signer.headers(job.event_id, job.body, int(time.time())),
            }
            status, body = self._post(target, headers, job.body.encode(), settings)
        except TargetRefused as exc:
            return outcome(error=f"refused: {exc}"[:ERROR_CHARS])
        except urllib3.exceptions.NewConnectionError as exc:  # a subclass of the timeout error in urllib3
            return outcome(error=_describe(exc))
        except urllib3.exceptions.TimeoutError:
            limits = f"connect {settings.connect_timeout:g} s, read {settings.read_timeout:g} s"
            return outcome(error=f"timed out ({limits})")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return outcome(error=_describe(exc))
        return outcome(status_code=status, response_body=body[:LOGGED_BODY_CHARS] or None)

    def _post(
        self, target: Target, headers: dict[str, str], body: bytes, settings: DeliverySettings
    ) -> tuple[int, str]:
        response = self._pool(target).urlopen(
            "POST",
            target.path,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,  # a redirect could point anywhere, the guard checked this host only
            assert_same_host=False,
            timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
            preload_content=False,
        )
        try:
            content = response.read(RESPONSE_READ_LIMIT, decode_content=True)
        except BaseException:
            response.close()
            raise
        if len(content) >= RESPONSE_READ_LIMIT:
            response.close()  # do not download the rest of a huge answer
        else:
            response.release_conn()
        return response.status, content.decode("utf-8", "replace")

    def _pool(self, target: Target) -> urllib3.HTTPConnectionPool:
        connect_host = target.address or target.host
        key = (target.scheme, connect_host, target.port, target.host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                if len(self._pools) >= MAX_POOLS:
                    for old in self._pools.values():
                        old.close()
                    self._pools.clear()
                pool = self._pools[key] = self._new_pool(target, connect_host)
            return pool

    def _new_pool(self, target: Target, connect_host: str) -> urllib3.HTTPConnectionPool:
        if target.scheme == "https":
            import certifi

            return urllib3.HTTPSConnectionPool(
                connect_host,
                target.port,
                maxsize=self.concurrency,
                server_hostname=target.host,  # SNI and certificate checks use the name, not the pinned address
                assert_hostname=target.host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=certifi.where(),
            )
        return urllib3.HTTPConnectionPool(connect_host, target.port, maxsize=self.concurrency)

    def close(self) -> None:
        self._executor.shutdown(wait=False)
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if text.startswith("<") and ">: " in text:  # urllib3 puts the connection object's repr first
        text = text.split(">: ", 1)[1]
    return f"{type(reason).__name__}: {text}"[:ERROR_CHARS]


def get_sender(app: Flask) -> Sender:
    """One sender per process (its pools and threads outlive a run of the job)."""
    sender = app.extensions.get(EXTENSION_KEY)
    concurrency = max(1, int(app.config.get("WEBHOOK_CONCURRENCY", 10)))
    if not isinstance(sender, Sender) or sender.concurrency != concurrency:
        sender = app.extensions[EXTENSION_KEY] = Sender(concurrency)
    return sender


def pending_counts(endpoint_ids: Iterable[int]) -> dict[int, int]:
    ids = list(endpoint_ids)
    if not ids:
        return {}
    statement = (
        sa.select(WebhookDelivery.endpoint_id, sa.func.count())
        .where(WebhookDelivery.endpoint_id.in_(ids), WebhookDelivery.status == DeliveryStatus.PENDING)
        .group_by(WebhookDelivery.endpoint_id)
    )
    return {endpoint_id: count for endpoint_id, count in db.session.execute(statement)}
