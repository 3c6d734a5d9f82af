"""uvicorn's h11 protocol with a read timeout: a client gets `read_timeout` seconds to send a whole request (headers
and body), so slow or half-open clients cannot hold the service's connections; the late ones get 408 and are closed.
uvicorn itself bounds only the idle time between requests (timeout_keep_alive)."""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class ReadTimeoutProtocol(H11Protocol):
    """H11Protocol whose every request must arrive within `read_timeout` seconds of its first byte (or of the
    connection, for the first request)."""

    read_timeout: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = self.loop.call_later(self.read_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        if self._read_deadline is None and self.conn.their_state is h11.IDLE:  # the next request on this connection
            self._read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._cancel_deadline()  # the request is in (or the connection is done): the app's own timeout rules

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _cancel_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


def with_read_timeout(seconds: float) -> type[ReadTimeoutProtocol]:
    """The protocol class for uvicorn's `http=` setting with this read timeout."""
    return type("ReadTimeoutProtocol", (ReadTimeoutProtocol,), {"read_timeout": seconds})
