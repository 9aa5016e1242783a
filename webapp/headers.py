"""Security headers on every response (issue 10.9).

HTML pages get a Content Security Policy that allows scripts only from our own origin: no inline scripts,
no inline event handlers, no eval (htmx runs with `allowEval: false`, see base.html). Styles keep
'unsafe-inline' because Plotly writes `style` attributes and a `<style>` element while it draws, and htmx
adds its indicator styles the same way; styles cannot run code, so this leaves script injection closed.
Everything else (JSON, CSV, JavaScript, the /v1 proxy) gets a policy that allows nothing at all.

Own code rather than Flask-Talisman: Talisman also rewrites the session cookie settings and redirects to
HTTPS itself, which belong to the auth settings and to the TLS-terminating proxy in front of gunicorn.
"""

from __future__ import annotations

from flask import Flask, Response

PAGE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
NON_PAGE_POLICY = "default-src 'none'; frame-ancestors 'none'"
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def init_app(app: Flask) -> None:
    headers = dict(ALWAYS)
    max_age = int(app.config.get("HSTS_MAX_AGE", 0))
    if app.config.get("ENV_NAME") == "production" and max_age > 0:
        # Sent on plain HTTP too: behind a TLS-terminating proxy the app itself only sees HTTP, and
        # browsers ignore the header on insecure responses anyway.
        headers["Strict-Transport-Security"] = f"max-age={max_age}; includeSubDomains"

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        policy = PAGE_POLICY if response.mimetype == "text/html" else NON_PAGE_POLICY
        response.headers.setdefault("Content-Security-Policy", policy)
        return response
