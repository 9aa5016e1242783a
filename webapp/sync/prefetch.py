"""Reads the next pages from LiteLLM while the current batch is written: HTTP and JSON parsing overlap
the database insert. At most `depth` pages wait in memory, so memory stays flat."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

Item = TypeVar("Item")
_DONE = object()
PUT_POLL_SECONDS = 0.5


def prefetched(source: Iterator[Item], depth: int = 2) -> Iterator[Item]:
    """Iterate `source` in a helper thread; its exceptions are raised here, in order."""
    pending: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                if not _put(pending, item, stop):
                    return
            _put(pending, _DONE, stop)
        except BaseException as exc:  # handed to the consumer, which raises it
            _put(pending, exc, stop)

    thread = threading.Thread(target=produce, name="litellm-prefetch", daemon=True)
    thread.start()
    try:
        while (item := pending.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def _put(pending: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            pending.put(item, timeout=PUT_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False
