"""The HTTP/1.1 keep-alive transport the HTTP adapters send through, against raw servers on
127.0.0.1 that frame their answers every way HTTP/1.1 allows."""

import asyncio
import contextlib
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from notifications.base import FailureReason
from notifications.http import build_client, classify_transport_error
from tests.notifications.servers import TlsFiles, unused_port

Answer = Callable[[bytes], Awaitable[bytes | None]]


class RawServer:
    """Reads one request at a time per connection and writes whatever ``answer`` returns (None:
    close the connection without answering)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.closed = 0
        self.close_after_reply = False
        self.requests: list[bytes] = []
        self.changed = asyncio.Condition()

    async def until(self, done: Callable[[], bool]) -> None:
        async with self.changed:
            await self.changed.wait_for(done)

    async def _tell(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                await self._tell()
                reply = await self.answer(request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if self.close_after_reply or b"connection: close" in reply.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.closed += 1
            await self._tell()


@contextlib.asynccontextmanager
async def raw_server(
    answer: Answer, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, RawServer]]:
    handler = RawServer(answer)
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", handler
    finally:
        server.close()
        await server.wait_closed()


def reply(body: bytes, *headers: bytes, status: bytes = b"200 OK") -> bytes:
    lines = [b"HTTP/1.1 " + status, *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def ok(_request: bytes) -> bytes:
    return reply(b'{"ok": true}', b"Content-Length: 12", b"Content-Type: application/json")


async def test_sequential_requests_share_one_connection() -> None:
    async with raw_server(ok) as (url, server), build_client(timeout_seconds=5) as client:
        for _ in range(3):
            response = await client.post(url + "/send", content=b'{"a": 1}')
            assert (response.status_code, response.json()) == (200, {"ok": True})
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /send HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in first.lower()
    assert first.endswith(b'\r\n\r\n{"a": 1}')


async def test_concurrent_requests_open_connections_up_to_the_limit() -> None:
    release = asyncio.Event()

    async def slow(_request: bytes) -> bytes:
        await release.wait()
        return await ok(_request)

    async with raw_server(slow) as (url, server), build_client(timeout_seconds=5) as client:
        sends = [asyncio.create_task(client.post(url, content=b"x")) for _ in range(40)]
        await server.until(lambda: len(server.requests) == 32)
        release.set()
        responses = await asyncio.gather(*sends)
    assert {r.status_code for r in responses} == {200}
    assert server.connections == 32  # the limit (notifications.http.IN_FLIGHT); 8 waited


@pytest.mark.parametrize(
    "framed",
    [
        reply(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"Transfer-Encoding: chunked"),
        reply(b"hello world", b"Connection: close"),  # ends where the connection does
        reply(
            gzip.compress(b"hello world"),
            b"Content-Encoding: gzip",
            f"Content-Length: {len(gzip.compress(b'hello world'))}".encode(),
        ),
    ],
    ids=["chunked", "close-delimited", "gzip"],
)
async def test_every_body_framing_is_read_whole(framed: bytes) -> None:
    async def answer(_request: bytes) -> bytes:
        return framed

    async with raw_server(answer) as (url, _), build_client(timeout_seconds=5) as client:
        response = await client.post(url, content=b"x")
        assert response.content == b"hello world"
        again = await client.post(url, content=b"x")  # a closed connection is not reused
        assert again.content == b"hello world"


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async with raw_server(ok) as (url, server), build_client(timeout_seconds=5) as client:
        server.close_after_reply = True  # as a server whose keep-alive timeout is very short
        assert (await client.post(url, content=b"x")).status_code == 200
        await server.until(lambda: server.closed == 1)
        await asyncio.sleep(0.05)  # the client's loop sees the hang-up
        assert (await client.post(url, content=b"x")).status_code == 200
    assert server.connections == 2


async def test_a_server_that_hangs_up_mid_answer_is_a_network_error() -> None:
    async def hang_up(_request: bytes) -> bytes | None:
        return None

    async with raw_server(hang_up) as (url, _), build_client(timeout_seconds=5) as client:
        with pytest.raises(httpx.ReadError) as caught:
            await client.post(url, content=b"x")
    assert classify_transport_error(caught.value).reason is FailureReason.CONNECTION_FAILED


async def test_garbage_instead_of_http_is_a_protocol_error() -> None:
    async def garbage(_request: bytes) -> bytes:
        return b"SMTP ready\r\n\r\n"

    async with raw_server(garbage) as (url, _), build_client(timeout_seconds=5) as client:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await client.post(url, content=b"x")
    assert classify_transport_error(caught.value).reason is FailureReason.PROTOCOL_ERROR


async def test_refused_and_silent_servers_are_classified() -> None:
    async with build_client(timeout_seconds=0.3) as client:
        with pytest.raises(httpx.ConnectError) as refused:
            await client.post(f"http://127.0.0.1:{unused_port()}/", content=b"x")
        assert classify_transport_error(refused.value).reason is FailureReason.CONNECTION_FAILED

        async def silent(_request: bytes) -> bytes:
            await asyncio.Event().wait()
            return b""

        async with raw_server(silent) as (url, _):
            with pytest.raises(httpx.ReadTimeout) as timed_out:
                await client.post(url, content=b"x")
        assert classify_transport_error(timed_out.value).reason is FailureReason.TIMEOUT


async def test_tls_is_verified_against_the_configured_ca(tls_files: TlsFiles) -> None:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tls_files.cert_file, tls_files.key_file)
    async with raw_server(ok, tls=served) as (url, _):
        async with build_client(timeout_seconds=5, ca_file=tls_files.ca_file) as trusting:
            assert (await trusting.post(url, content=b"x")).json() == {"ok": True}
        async with build_client(timeout_seconds=5) as system_trust:
            with pytest.raises(httpx.ConnectError) as refused:
                await system_trust.post(url, content=b"x")
    assert classify_transport_error(refused.value).reason is FailureReason.TLS_FAILED


def test_it_runs_on_the_services_event_loop(tls_files: TlsFiles) -> None:
    """uvicorn runs the service (and so the dispatcher) on uvloop, whose transports are not
    asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tls_files.cert_file, tls_files.key_file)

    async def exchange() -> list[int]:
        async with (
            raw_server(ok, tls=served) as (url, server),
            build_client(timeout_seconds=5, ca_file=tls_files.ca_file) as client,
        ):
            statuses = [(await client.post(url, content=b"x")).status_code for _ in range(3)]
        assert server.connections == 1
        return statuses

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(exchange()) == [200, 200, 200]
