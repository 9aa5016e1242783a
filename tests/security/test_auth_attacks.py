"""Attacks on sign-in, sessions and personal tokens, each shown to fail.

Brute force (per account, per IP, in parallel, across workers), email enumeration by answer and by timing,
stolen or replayed session and remember-me cookies, session fixation, open redirects after sign-in,
expired and revoked API tokens.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from cryptography.fernet import Fernet
from flask_login.utils import encode_cookie

from tests.auth.helpers import (
    REMEMBER_COOKIE,
    SESSION_COOKIE,
    THROTTLED,
    WRONG_CREDENTIALS,
    client_with_cookie,
    cookie_expiry,
    cookie_value,
    csrf_token_in,
    set_cookie_header,
    sign_in,
    signed_in,
)
from tests.conftest import TEST_PASSWORD, bearer
from webapp import create_app
from webapp.auth.throttle import EXTENSION, MemoryThrottleStore, RedisThrottleStore
from webapp.config import ProductionConfig
from webapp.extensions import db
from webapp.models import PersonalToken, User

REDIS_TEST_URL = "redis://127.0.0.1:6379/15"


def _redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_TEST_URL}")


# ---------------------------------------------------------------- brute force


def test_ten_failures_lock_the_account_even_against_the_right_password(app_with, make_user):
    application = app_with()
    victim, bystander = make_user("staff"), make_user("staff")
    attacker = application.test_client()
    for _ in range(10):
        response = sign_in(attacker, victim.email, "guess-" + uuid.uuid4().hex)
        assert response.status_code == 200 and WRONG_CREDENTIALS in response.get_data(as_text=True)

    refused = sign_in(attacker, victim.email, TEST_PASSWORD)

    assert refused.status_code == 429 and THROTTLED in refused.get_data(as_text=True)
    assert int(refused.headers["Retry-After"]) > 0
    assert not signed_in(attacker)
    # The victim is locked from every address; other accounts are not.
    elsewhere = {"REMOTE_ADDR": "10.9.9.9"}
    assert sign_in(application.test_client(), victim.email, environ_base=elsewhere).status_code == 429
    assert sign_in(application.test_client(), bystander.email).status_code == 302


def test_the_lock_lifts_after_the_cooldown(app_with, make_user):
    application = app_with(LOGIN_MAX_FAILURES=3, LOGIN_COOLDOWN_SECONDS=600)
    now = [1_000_000.0]
    application.extensions[EXTENSION] = MemoryThrottleStore(clock=lambda: now[0])
    user = make_user("staff")
    client = application.test_client()
    for _ in range(3):
        sign_in(client, user.email, "wrong-password")
    assert sign_in(client, user.email).status_code == 429
    now[0] += 599
    assert sign_in(client, user.email).status_code == 429
    now[0] += 2
    assert sign_in(client, user.email).status_code == 302


def test_unknown_emails_are_answered_and_locked_like_real_ones(app_with, make_user):
    application = app_with()
    real = make_user("staff")
    answers: dict[str, list[tuple[int, bool, bool]]] = {}
    for email in (real.email, f"nobody-{uuid.uuid4().hex[:6]}@example.test"):
        client = application.test_client()
        answers[email] = []
        for _ in range(11):
            response = sign_in(client, email, "not-the-password")
            page = response.get_data(as_text=True)
            answers[email].append((response.status_code, WRONG_CREDENTIALS in page, THROTTLED in page))
    known, unknown = answers.values()
    assert known == unknown
    assert known[-1] == (429, False, True) and known[0] == (200, True, False)


def test_the_ip_limit_stops_password_spraying_across_accounts(app_with, make_user):
    application = app_with(LOGIN_IP_MAX_FAILURES=5)
    user = make_user("staff")
    sprayer = {"REMOTE_ADDR": "198.51.100.7"}
    for number in range(5):
        sign_in(application.test_client(), f"user{number}@example.test", "Winter2026!", environ_base=sprayer)

    assert sign_in(application.test_client(), user.email, environ_base=sprayer).status_code == 429
    neighbour = {"REMOTE_ADDR": "198.51.100.8"}
    assert sign_in(application.test_client(), user.email, environ_base=neighbour).status_code == 302


def test_forged_forwarded_for_headers_do_not_escape_the_ip_limit(app_with, make_user):
    user = make_user("staff")
    direct = app_with(LOGIN_IP_MAX_FAILURES=3)
    for number in range(3):
        forged = {"X-Forwarded-For": f"203.0.113.{number}"}
        sign_in(direct.test_client(), f"u{number}@example.test", "x", headers=forged)
    assert sign_in(direct.test_client(), user.email, headers={"X-Forwarded-For": "203.0.113.99"}).status_code == 429

    # Behind one trusted proxy, the address that proxy saw counts, not what the client wrote before it.
    proxied = app_with(LOGIN_IP_MAX_FAILURES=3, TRUSTED_PROXY_HOPS=1)
    for number in range(3):
        forged = {"X-Forwarded-For": f"10.0.0.{number}, 192.0.2.50"}
        sign_in(proxied.test_client(), f"u{number}@example.test", "x", headers=forged)
    refused = sign_in(proxied.test_client(), user.email, headers={"X-Forwarded-For": "10.0.0.99, 192.0.2.50"})
    assert refused.status_code == 429
    assert sign_in(proxied.test_client(), user.email, headers={"X-Forwarded-For": "192.0.2.51"}).status_code == 302


def test_parallel_guesses_on_two_workers_get_at_most_the_limit(app_with, make_user):
    """Two app instances (workers) sharing Redis, 16 threads guessing at once: at most 10 guesses are checked."""
    _redis_or_skip()
    store = RedisThrottleStore(REDIS_TEST_URL, prefix=f"a1test:{uuid.uuid4().hex}:")
    workers = [app_with(), app_with(WORKER_NAME="second")]  # a setting nothing reads: a second instance
    for worker in workers:
        worker.extensions[EXTENSION] = store
    victim = make_user("staff")
    checked: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(16)

    def guess(worker_index: int) -> None:
        client = workers[worker_index].test_client()
        start.wait()
        for _ in range(4):
            response = sign_in(client, victim.email, "guess-" + uuid.uuid4().hex)
            (checked if response.status_code == 200 else refused).append(response.status_code)

    threads = [threading.Thread(target=guess, args=(index % 2,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(checked) <= 10 and len(checked) + len(refused) == 64
    assert set(refused) == {429}
    assert sign_in(workers[0].test_client(), victim.email).status_code == 429


def test_unknown_emails_take_as_long_as_known_ones(app_with, make_user):
    """Enumeration by timing: the median of unknown-email attempts is within 3x of known-email ones."""
    application = app_with(LOGIN_MAX_FAILURES=1000, LOGIN_IP_MAX_FAILURES=1000)
    known = make_user("staff").email
    unknown = f"ghost-{uuid.uuid4().hex[:8]}@example.test"
    client = application.test_client()
    timings: dict[str, list[float]] = {known: [], unknown: []}
    sign_in(client, known, "warm-up-password")
    for _ in range(7):
        for email in (known, unknown):
            started = time.perf_counter()
            sign_in(client, email, "a-wrong-password")
            timings[email].append(time.perf_counter() - started)
    known_median, unknown_median = statistics.median(timings[known]), statistics.median(timings[unknown])
    assert max(known_median, unknown_median) / min(known_median, unknown_median) < 3


def test_the_password_form_cannot_be_used_to_guess_the_password(app_with, make_user):
    """A stolen session must not become an unthrottled password oracle."""
    application = app_with(LOGIN_MAX_FAILURES=3)
    user = make_user("staff")
    client = application.test_client()
    assert sign_in(client, user.email).status_code == 302
    for _ in range(3):
        guess = "guess-" + uuid.uuid4().hex
        change = {"current_password": guess, "new_password": "x" * 12, "confirm_password": "x" * 12}
        assert client.post("/account/password", data=change).status_code == 422
    right = {"current_password": TEST_PASSWORD, "new_password": "y" * 12, "confirm_password": "y" * 12}
    response = client.post("/account/password", data=right)
    assert response.status_code == 429 and THROTTLED in response.get_data(as_text=True)
    with application.app_context():
        assert db.session.get(User, user.id).check_password(TEST_PASSWORD)


# ---------------------------------------------------------------- stolen and replayed cookies


def test_logout_kills_every_session_and_remember_cookie_of_the_user(app_with, make_user):
    application = app_with()
    user = make_user("staff")
    laptop, phone = application.test_client(), application.test_client()
    sign_in(laptop, user.email, remember=True)
    sign_in(phone, user.email, remember=True)
    stolen_session = cookie_value(laptop, SESSION_COOKIE)
    stolen_remember = cookie_value(laptop, REMEMBER_COOKIE)
    assert stolen_session and stolen_remember
    assert signed_in(client_with_cookie(application, REMEMBER_COOKIE, stolen_remember))

    laptop.post("/logout", data={})

    assert not signed_in(laptop)
    assert not signed_in(phone), "the other device is signed out too"
    assert not signed_in(client_with_cookie(application, SESSION_COOKIE, stolen_session))
    assert not signed_in(client_with_cookie(application, REMEMBER_COOKIE, stolen_remember))
    assert cookie_value(laptop, REMEMBER_COOKIE) is None, "the browser is told to drop the remember cookie"


def test_password_change_kills_other_sessions_and_keeps_this_one(app_with, make_user):
    application = app_with()
    user = make_user("staff")
    here, elsewhere = application.test_client(), application.test_client()
    sign_in(here, user.email)
    sign_in(elsewhere, user.email, remember=True)
    stolen_remember = cookie_value(elsewhere, REMEMBER_COOKIE)
    assert stolen_remember is not None

    new_password = "a-brand-new-password"
    change = {"current_password": TEST_PASSWORD, "new_password": new_password, "confirm_password": new_password}
    assert here.post("/account/password", data=change).status_code == 302

    assert signed_in(here)
    assert not signed_in(elsewhere)
    assert not signed_in(client_with_cookie(application, REMEMBER_COOKIE, stolen_remember))
    assert sign_in(application.test_client(), user.email).status_code == 200
    assert sign_in(application.test_client(), user.email, new_password).status_code == 302


def test_remember_cookies_differ_per_sign_in_and_last_at_most_30_days(app_with, make_user):
    application = app_with()
    user = make_user("staff")
    headers = []
    values = []
    for _ in range(2):
        client = application.test_client()
        response = sign_in(client, user.email, remember=True)
        headers.append(set_cookie_header(response, REMEMBER_COOKIE))
        values.append(cookie_value(client, REMEMBER_COOKIE))
    assert values[0] != values[1]
    expires = cookie_expiry(headers[0])
    now = datetime.now(UTC)
    assert now + timedelta(days=29) < expires <= now + timedelta(days=30, minutes=5)
    assert "HttpOnly" in headers[0] and "SameSite=Lax" in headers[0]


def test_a_remember_cookie_replayed_after_30_days_is_refused(app_with, make_user):
    """The browser drops it after 30 days; a copy kept by a thief is refused by the server too."""
    application = app_with()
    user = make_user("staff")

    def forged_cookie(signed_in_at: float) -> str:
        with application.test_request_context():
            return encode_cookie(f"{user.id}:0:{int(signed_in_at)}:0123456789abcdef")

    month_old = time.time() - 30 * 86400 - 60
    assert not signed_in(client_with_cookie(application, REMEMBER_COOKIE, forged_cookie(month_old)))
    assert signed_in(client_with_cookie(application, REMEMBER_COOKIE, forged_cookie(time.time() - 29 * 86400)))


def test_sign_in_starts_a_fresh_session_with_a_new_csrf_token(app_with, make_user):
    """Session fixation: nothing an attacker put into the session before sign-in survives it."""
    application = app_with(WTF_CSRF_ENABLED=True)
    user = make_user("staff")
    client = application.test_client()
    before = csrf_token_in(client.get("/login").get_data(as_text=True))
    with client.session_transaction() as planted:
        planted["planted_by_attacker"] = "yes"
    response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": before})
    assert response.status_code == 302
    with client.session_transaction() as session:
        assert "planted_by_attacker" not in session
    after = csrf_token_in(client.get("/tokens").get_data(as_text=True))
    assert after != before
    assert client.post("/tokens", data={"name": "x", "csrf_token": before}).status_code == 400
    assert client.post("/tokens", data={"name": "x", "csrf_token": after}).status_code == 201


def test_production_cookies_are_secure_httponly_and_samesite(app, database_url, make_user):
    production = type(
        "ProductionRun",
        (ProductionConfig,),
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": "p" * 48,
            "ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "LITELLM_BASE_URL": "http://127.0.0.1:9",
            "LITELLM_MASTER_KEY": "sk-a-real-master-key",
            "REDIS_URL": None,
            "SCHEDULER_ENABLED": False,
        },
    )
    application = create_app(production)
    user = make_user("staff")
    client = application.test_client()
    token = csrf_token_in(client.get("/login", base_url="https://localhost").get_data(as_text=True))
    response = client.post(
        "/login",
        data={"email": user.email, "password": TEST_PASSWORD, "remember": "y", "csrf_token": token},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/login"},  # Flask-WTF checks it on HTTPS
    )
    assert response.status_code == 302
    for name in (SESSION_COOKIE, REMEMBER_COOKIE):
        header = set_cookie_header(response, name)
        assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header, header
    with application.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example/", "/\\/evil"])
def test_sign_in_never_redirects_to_another_site(client, make_user, target):
    user = make_user("staff")
    response = client.post(f"/login?next={target}", data={"email": user.email, "password": TEST_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/"


# ---------------------------------------------------------------- personal tokens


def test_expired_and_revoked_tokens_get_401_json(app, client, make_user, make_token):
    user = make_user("staff")
    expired, revoked, active = make_token(user), make_token(user), make_token(user)
    with app.app_context():
        tokens = {token.id: token for token in db.session.scalars(db.select(PersonalToken))}
        first, second = sorted(tokens)[:2]
        tokens[first].expires_at = datetime.now(UTC) - timedelta(seconds=1)
        tokens[second].revoked_at = datetime.now(UTC)
        db.session.commit()

    for secret, code in ((expired, "token_expired"), (revoked, "unauthorized")):
        response = client.get("/api/me", headers=bearer(secret))
        assert response.status_code == 401 and response.is_json
        assert response.get_json()["error"]["code"] == code
    assert client.get("/api/me", headers=bearer(active)).status_code == 200


def test_a_deactivated_users_token_and_session_stop_working(app, client, make_user, make_token):
    user = make_user("staff")
    secret = make_token(user)
    sign_in(client, user.email)
    with app.app_context():
        db.session.get(User, user.id).active = False
        db.session.commit()
    assert client.get("/api/me", headers=bearer(secret)).status_code == 401
    assert not signed_in(client)
