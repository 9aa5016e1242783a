"""The CSV download name comes from stored data (the tenant's slug): whatever it holds, the header stays one
quoted ASCII token of [a-z0-9-_.] (no quote, CR/LF, path separator or non-ASCII gets into Content-Disposition)."""

from __future__ import annotations

from datetime import date

import pytest

from webapp.dashboard.views import export_filename
from webapp.models import Tenant
from webapp.usage.queries import days_period

PERIOD = days_period(date(2026, 11, 1), date(2026, 11, 30))


@pytest.mark.parametrize(
    ("slug", "name"),
    [
        ("acme", "usage-acme-2026-11-01_2026-11-30.csv"),
        ('evil"; filename="x.exe', "usage-evil-filename-x-exe-2026-11-01_2026-11-30.csv"),
        ("a\r\nSet-Cookie: s=1", "usage-a-set-cookie-s-1-2026-11-01_2026-11-30.csv"),
        ("../../etc/passwd", "usage-etc-passwd-2026-11-01_2026-11-30.csv"),
        ("şirket-ğüç", "usage-irket-2026-11-01_2026-11-30.csv"),
        ("---", "usage-all-tenants-2026-11-01_2026-11-30.csv"),
    ],
)
def test_download_names_are_safe(slug: str, name: str) -> None:
    assert export_filename(Tenant(name="T", slug=slug), PERIOD) == name
