"""The customer quickstart: base URL, snippets, models and limits after creating a key and on the keys page.

The Python snippet shown once with the new secret is run as written (openai SDK) against this app served over
HTTP, in front of the LiteLLM simulator."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from io import StringIO

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tests.conftest import TEST_PASSWORD, login
from tests.keys.conftest import TenantSetup
from webapp.keys.quickstart import SECRET_PLACEHOLDER


def _snippet(page: str, snippet_id: str) -> str:
    found = re.search(rf'<code id="{snippet_id}">(.*?)</code>', page, re.S)
    assert found is not None, f"no {snippet_id} on the page"
    return html.unescape(found.group(1))


@contextmanager
def _served(application: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def test_new_key_page_shows_working_snippets_with_the_secret(keys_app: Flask, web: FlaskClient, acme: TenantSetup):
    login(web, acme.admin)
    with _served(keys_app) as server_url:
        keys_app.config["PUBLIC_BASE_URL"] = f"{server_url}/v1"
        try:
            response = web.post("/keys", data={"name": "quick", "allowed_models": "gpt-4o-mini", "rpm_limit": "30"})
            assert response.status_code == 201
            page = response.get_data(as_text=True)
            secret = _snippet(page, "new-secret")

            assert _snippet(page, "qs-base-url") == f"{server_url}/v1"
            for snippet_id in ("qs-curl", "qs-python", "qs-node"):
                code = _snippet(page, snippet_id)
                assert secret in code and f"{server_url}/v1" in code and '"gpt-4o-mini"' in code
                assert SECRET_PLACEHOLDER not in code
            assert "from openai import OpenAI" in _snippet(page, "qs-python")
            assert 'import OpenAI from "openai"' in _snippet(page, "qs-node")
            # what the key may use: its own models and rpm, the plan's tpm and budget
            allowance = page.split('<dl class="allowance">')[1].split("</dl>")[0]
            assert "<code>gpt-4o-mini</code>" in allowance and "<code>gpt-4o</code>" not in allowance
            assert "<dd>30</dd>" in allowance and "<dd>100,000</dd>" in allowance

            printed = StringIO()
            with redirect_stdout(printed):
                exec(_snippet(page, "qs-python"), {})  # noqa: S102 - the customer's copy-paste, run as is
            assert printed.getvalue().strip()
        finally:
            keys_app.config["PUBLIC_BASE_URL"] = ""


def test_keys_page_shows_the_request_host_and_a_placeholder(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, create_key
):
    create_key(acme, rpm_limit=45, allowed_models=["gpt-4o-mini"])
    host = "https://llm.customer.example"
    signed_in = web.post("/login", data={"email": acme.member.email, "password": TEST_PASSWORD}, base_url=host)
    assert signed_in.status_code == 302

    page = web.get("/keys", base_url=host).get_data(as_text=True)

    assert _snippet(page, "qs-base-url") == "https://llm.customer.example/v1"
    python = _snippet(page, "qs-python")
    assert f'api_key="{SECRET_PLACEHOLDER}"' in python and "a1sk-" not in python
    assert 'base_url="https://llm.customer.example/v1"' in python
    assert "<dd>45</dd>" in page and "<code>gpt-4o-mini</code>" in page
    assert page.count('data-copy-target="qs-') == 4


def test_public_base_url_setting_wins_over_the_request_host(keys_app: Flask, web: FlaskClient, acme: TenantSetup):
    login(web, acme.admin)
    keys_app.config["PUBLIC_BASE_URL"] = "https://api.a1.example/v1"
    try:
        page = web.get("/keys").get_data(as_text=True)
    finally:
        keys_app.config["PUBLIC_BASE_URL"] = ""
    assert _snippet(page, "qs-base-url") == "https://api.a1.example/v1"
    assert "curl https://api.a1.example/v1/chat/completions" in _snippet(page, "qs-curl")
