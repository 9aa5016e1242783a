"""The one HTTP client for LiteLLM's OpenAI endpoints: a shared urllib3 connection pool, timeouts always set.

urllib3 directly rather than requests: it is the same pool underneath with a fraction of the per-call
overhead, and it exposes chunked reads, which streaming needs to pass chunks on as they arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection
from urllib3.exceptions import HTTPError, ReadTimeoutError

from webapp.proxy import errors

STREAM_READ_SIZE = 65536
CALL_ID_HEADER = "x-litellm-call-id"


class CoalescingConnection(HTTPConnection):
    """Request line, headers and body in one send(): urllib3 writes the headers and the body separately,
    and on loopback every send() costs the whole TCP receive path of the peer as well."""

    _held: bytearray | None = None

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._held = bytearray()
        try:
            super().request(*args, **kwargs)
            held = self._held
        finally:
            self._held = None
        if held:
            super().send(bytes(held))

    def send(self, data: Any) -> None:
        if self._held is not None and isinstance(data, bytes | bytearray | memoryview):
            self._held += data
            return
        super().send(data)


class Upstream:
    def __init__(self, base_url: str, connect_timeout: float, read_timeout: float, pool_size: int) -> None:
        self.base_path = urlsplit(base_url).path.rstrip("/")
        self._pool = urllib3.connection_from_url(
            base_url,
            maxsize=pool_size,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        )
        if type(self._pool) is urllib3.HTTPConnectionPool:
            self._pool.ConnectionCls = CoalescingConnection

    def request(
        self,
        method: str,
        path: str,
        virtual_key: str,
        body: bytes | None = None,
        stream: bool = False,
        call_id: str | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Send with the key's LiteLLM virtual key, and `call_id` (our request id) as LiteLLM's call id;
        ProxyError 502/504 when LiteLLM cannot be reached."""
        headers = {"Authorization": f"Bearer {virtual_key}", "Accept": "application/json"}
        if call_id is not None:
            headers[CALL_ID_HEADER] = call_id
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            return self._pool.urlopen(
                method,
                self.base_path + path,
                body=body,
                headers=headers,
                preload_content=not stream,
                redirect=False,
            )
        except ReadTimeoutError as exc:
            raise errors.upstream_timeout() from exc
        except HTTPError as exc:
            raise errors.upstream_unavailable() from exc

    def close(self) -> None:
        self._pool.close()


def iter_raw_chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """Each piece of the body as soon as it arrives (an HTTP chunk, or whatever one read returns)."""
    if getattr(response, "chunked", False) and hasattr(response, "read_chunked"):
        yield from response.read_chunked(decode_content=True)
        return
    while chunk := response.read1(STREAM_READ_SIZE):
        yield chunk
