"""`db.session` that can send a block of reads to another engine (the read replica: webapp/replica.py).

Inside `reading_from(engine)` every SELECT of `db.session` runs on `engine`; writes never do: a flush, an
INSERT/UPDATE/DELETE statement and a SELECT ... FOR UPDATE keep going to the primary, so a write inside such a
block is still correct. Outside a block nothing changes. The choice is per greenlet/thread (a ContextVar)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy.session import Session

_read_engine: ContextVar[sa.Engine | None] = ContextVar("a1_read_engine", default=None)


@contextmanager
def reading_from(engine: sa.Engine | None) -> Iterator[None]:
    """Send the block's reads to `engine` (None: the primary, as outside any block)."""
    token = _read_engine.set(engine)
    try:
        yield
    finally:
        _read_engine.reset(token)


def current_read_engine() -> sa.Engine | None:
    return _read_engine.get()


def _writes(clause: Any) -> bool:
    if clause is None:
        return False
    if getattr(clause, "is_dml", False):
        return True
    return getattr(clause, "_for_update_arg", None) is not None


class RoutingSession(Session):
    def get_bind(
        self,
        mapper: Any | None = None,
        clause: Any | None = None,
        bind: sa.Engine | sa.Connection | None = None,
        **kwargs: Any,
    ) -> sa.Engine | sa.Connection:
        engine = _read_engine.get()
        if bind is None and engine is not None and not self._flushing and not _writes(clause):
            return engine
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)
