"""Test support (no tests here): a real control-socket server on an event loop in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from afbr.daemon.control_socket import ControlServer, Handler


@contextmanager
def serving(path: Path, handlers: dict[str, Handler]) -> Iterator[Path]:
    """`handlers` answer on the socket at `path` until the block ends."""
    loop = asyncio.new_event_loop()
    server = ControlServer(path, handlers, allowed_uid=-1)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
