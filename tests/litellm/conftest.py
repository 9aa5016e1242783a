from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.litellm.scripted_server import ScriptedServer


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server
