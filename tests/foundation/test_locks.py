from __future__ import annotations

from tests.conftest import make_test_config
from webapp import create_app
from webapp.locks import job_lock


def test_postgresql_lock_excludes_a_second_holder_until_released(app):
    with app.app_context():
        with job_lock(42) as first, job_lock(42) as second, job_lock(43) as other:
            assert first.acquired and first.excludes_other_processes
            assert not second.acquired
            assert other.acquired
        with job_lock(42) as again:
            assert again.acquired


def test_sqlite_falls_back_to_an_in_process_lock(tmp_path):
    app = create_app(make_test_config(f"sqlite:///{tmp_path / 'embedded.db'}"))
    with app.app_context():
        with job_lock(7) as first, job_lock(7) as second:
            assert first.acquired and not first.excludes_other_processes
            assert not second.acquired
        with job_lock(7) as again:
            assert again.acquired
