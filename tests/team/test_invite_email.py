"""Invitation emails: sent through SMTP when MAIL_SERVER is set; a mail failure still leaves the admin the link."""

from __future__ import annotations

import re

from tests.conftest import login
from tests.team.helpers import accept, invite
from tests.webhooks.receivers import MailSink, free_port


def test_invitation_is_emailed_with_the_same_one_time_link(app_with, make_tenant, make_user):
    sink = MailSink()
    try:
        application = app_with(**sink.config())
        tenant = make_tenant(name="Mail Corp")
        client = application.test_client()
        login(client, make_user("admin", tenant))

        token = invite(client, "mailed@example.test")

        [message] = sink.to("mailed@example.test")
        assert "Mail Corp" in message["Subject"]
        body = message.get_payload(decode=True).decode()
        links = re.findall(r"http://localhost/team/join/(\S+)", body)
        assert links == [token] and "72 hours" in body
        assert accept(application.test_client(), token).status_code == 302
    finally:
        sink.close()


def test_unreachable_mail_server_still_shows_the_link(app_with, make_tenant, make_user):
    application = app_with(MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), MAIL_TIMEOUT=2.0)
    client = application.test_client()
    login(client, make_user("admin", make_tenant()))

    response = client.post("/team/invites", data={"email": "nomail@example.test", "role": "member"})

    assert response.status_code == 201
    page = response.get_data(as_text=True)
    assert "Send this link to nomail@example.test" in page and "/team/join/a1inv-" in page
