"""A lean HTTP/1.1 keep-alive transport for httpx: what push fan-out spends its CPU on.

httpx's default transport (httpcore over anyio, h11 in pure Python) cost ~1 ms of CPU per request
against a local FCM receiver, which alone caps one dispatcher near 1,000 messages/s
(bench/bench_notifications.py). This transport keeps the httpx API the adapters use (requests,
responses, the httpx exceptions `classify_transport_error` maps) and does the wire work with an
asyncio protocol and httptools (llhttp, the parser uvicorn already uses for our server).

Scope, deliberately small: HTTP/1.1 only (HTTP/2 for APNs stays on httpx's transport), one request
at a time per connection (no pipelining), request bodies already in memory, whole response bodies
read into memory (provider answers are small), keep-alive connections reused per origin up to a
limit. Timeouts come from the request's ``timeout`` extension like httpx's own transport, except
that ``read`` bounds the whole answer and ``write`` is not separate (writes are buffered). A
keep-alive connection the server closes just as a request goes out fails that request
(`httpx.ReadError`, retryable); the outbox sends it again, as with httpx's transport.
"""

import asyncio
import ssl
from collections import deque
from typing import Final, cast

import httptools
import httpx

_HTTP11: Final = b"HTTP/1.1"


class _Connection(asyncio.Protocol):
    """One keep-alive connection; the pool hands it one request at a time."""

    def __init__(self) -> None:
        # uvloop's transports (the service's loop) are not asyncio.Transport subclasses.
        self.transport: asyncio.WriteTransport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._done: asyncio.Future[None] | None = None
        self._delimited_by_close = False
        self._keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            if self._delimited_by_close and exc is None:
                # No Content-Length and not chunked: the body ends where the connection does.
                self._done.set_result(None)
                return
            error = httpx.ReadError("connection closed before the response was complete")
            if exc is not None:
                error.__cause__ = exc
            self._done.set_exception(error)

    def data_received(self, data: bytes) -> None:
        if self._done is None or self._done.done():
            # Bytes nobody asked for: the server is not speaking HTTP/1.1 as agreed.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._done.set_exception(httpx.RemoteProtocolError(str(error)))
            self.close()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        framed = {name.lower() for name, _ in self._headers} & {
            b"content-length",
            b"transfer-encoding",
        }
        self._delimited_by_close = not framed and self._parser.get_status_code() not in (204, 304)
        # Asked here: llhttp answers for the message being parsed, not after it completed.
        self._keep_alive = self._parser.should_keep_alive() and not self._delimited_by_close

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # used by the pool
    async def exchange(
        self, head: bytes, body: bytes, read_timeout: float | None
    ) -> httpx.Response:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._headers, self._body, self._delimited_by_close = [], [], False
        self._done = loop.create_future()
        self.transport.write(head + body)
        try:
            async with asyncio.timeout(read_timeout):
                await self._done
        except TimeoutError:
            self.close()
            raise httpx.ReadTimeout("no complete response in time") from None
        status = self._parser.get_status_code()
        if not self._keep_alive:
            self.close()
        # A raw stream, as httpx's own transport returns: the client decodes Content-Encoding.
        return httpx.Response(
            status,
            headers=self._headers,
            stream=httpx.ByteStream(b"".join(self._body)),
            extensions={"http_version": _HTTP11},
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Origin:
    """Connections to one scheme://host:port. A connection is opened only by a request holding a
    slot when none is idle, so at most ``limit`` exist, idle or busy."""

    def __init__(self, limit: int) -> None:
        self.idle: deque[_Connection] = deque()
        self.slots = asyncio.Semaphore(limit)


class KeepAliveTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, verify: ssl.SSLContext, max_connections: int) -> None:
        self._verify = verify
        self._limit = max_connections
        self._origins: dict[tuple[bytes, bytes, int], _Origin] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":  # its answer has a length but no body: not needed here
            raise httpx.UnsupportedProtocol("HEAD is not supported by KeepAliveTransport")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        key = (scheme, url.raw_host, port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(self._limit)
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        head = b"".join(
            [
                request.method.encode("ascii"),
                b" ",
                url.raw_path,
                b" HTTP/1.1\r\n",
                *(name + b": " + value + b"\r\n" for name, value in request.headers.raw),
                b"\r\n",
            ]
        )
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await origin.slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection free in time") from None
        try:
            connection = await self._connection(origin, key, timeouts.get("connect"))
            try:
                response = await connection.exchange(head, body, timeouts.get("read"))
            except BaseException:
                connection.close()  # its state is unknown (a cancelled send, a parse error)
                raise
            if not connection.closed:
                origin.idle.append(connection)
        finally:
            origin.slots.release()
        response.request = request
        return response

    async def _connection(
        self, origin: _Origin, key: tuple[bytes, bytes, int], connect_timeout: float | None
    ) -> _Connection:
        while origin.idle:
            connection = origin.idle.pop()
            if not connection.closed:  # else the server closed it while it was idle
                return connection
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self._verify if scheme == b"https" else None
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection,
                    host.decode("ascii"),
                    port,
                    ssl=tls,
                    server_hostname=host.decode("ascii") if tls is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("connecting took too long") from None
        except OSError as error:  # refused, unreachable, and ssl.SSLError (a subclass)
            raise httpx.ConnectError(str(error) or type(error).__name__) from error
        return connection

    async def aclose(self) -> None:
        for origin in self._origins.values():
            while origin.idle:
                origin.idle.pop().close()
        self._origins.clear()
        await asyncio.sleep(0)  # let the transports' close callbacks run
