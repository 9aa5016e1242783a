"""Outbound webhooks (Standard Webhooks) and email notifications (issue 12).

- `events.emit(type, data, tenant_id)`: the one call that reports an event; it writes the outbox row in the
  caller's transaction.
- `delivery`: the worker (scheduled every WEBHOOK_POLL_SECONDS, or `flask webhooks deliver`) fans events
  out to endpoints and email and sends signed attempts with backoff (WEBHOOK_RETRY_SCHEDULE), disabling
  an endpoint after WEBHOOK_DISABLE_AFTER_FAILURES consecutive failed attempts.
- `checks`: budget thresholds, expiring keys, unmapped LiteLLM keys, LiteLLM reachability, retention
  (every WEBHOOK_CHECK_SECONDS).
- `targets`: the SSRF guard (WEBHOOK_ALLOW_PRIVATE_TARGETS); `mail`: SMTP (MAIL_*).
- Pages (`views.bp`): /webhooks (tenant admins), /staff/webhooks (staff), /settings/notifications (everyone).
  REST (`api.api_bp`, `api.admin_api_bp`): /api/webhooks, /api/admin/webhooks, /api/me/notifications.

The package itself imports nothing, so services anywhere can import `webapp.webhooks.events` cheaply.
"""
