"""HTTP transport shared by the HTTP adapters: client construction and failure classification.

Classification follows RFC 9110: 5xx and 408 are the server's trouble (retry); 429 asks us to
slow down, with an optional Retry-After (RFC 6585 §4, RFC 9110 §10.2.3); other 4xx say the
request itself is wrong, so sending it again cannot help. 401/403 mean our credentials were
refused (retryable: see `base.RETRYABLE_REASONS`). Adapters refine 4xx with the provider's own
error codes (a gone device token, a refused phone number).
"""

import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from notifications.base import Channel, DeliveryError, FailureReason, Message, Receipt
from notifications.keepalive import KeepAliveTransport

# One day: longer than any clinical window we deliver in, so a larger value is no advice.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or an HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def classify_status(
    status: int, *, retry_after: str | None = None, now: datetime
) -> DeliveryError | None:
    """None for 2xx; otherwise the classified failure for an HTTP status code."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return DeliveryError(
            FailureReason.RATE_LIMITED,
            http_status=status,
            retry_after_seconds=parse_retry_after(retry_after, now),
        )
    if status == 408:
        return DeliveryError(FailureReason.TIMEOUT, http_status=status)
    if status >= 500:
        return DeliveryError(
            FailureReason.PROVIDER_UNAVAILABLE,
            http_status=status,
            retry_after_seconds=parse_retry_after(retry_after, now),
        )
    if status in (401, 403):
        return DeliveryError(FailureReason.AUTH_FAILED, http_status=status)
    if status == 413:
        return DeliveryError(FailureReason.PAYLOAD_TOO_LARGE, http_status=status)
    if 400 <= status < 500:
        return DeliveryError(FailureReason.REJECTED, http_status=status)
    # 1xx/3xx as a final answer: we never follow redirects to a place nobody configured.
    return DeliveryError(FailureReason.MISCONFIGURED, http_status=status)


def _caused_by_tls(error: BaseException) -> bool:
    seen: BaseException | None = error
    for _ in range(10):  # the chain is short (httpx -> httpcore -> ssl); never loop forever
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def classify_transport_error(error: httpx.TransportError) -> DeliveryError:
    if isinstance(error, httpx.TimeoutException):
        return DeliveryError(FailureReason.TIMEOUT)
    if isinstance(error, httpx.ConnectError) and _caused_by_tls(error):
        return DeliveryError(FailureReason.TLS_FAILED)
    if isinstance(error, httpx.ConnectError | httpx.NetworkError):
        return DeliveryError(FailureReason.CONNECTION_FAILED)
    return DeliveryError(FailureReason.PROTOCOL_ERROR)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """System trust store, or a private CA bundle (a self-hosted relay, or the tests' fakes)."""
    return ssl.create_default_context(cafile=ca_file)


# As many sends in flight as the dispatcher makes at once (its default concurrency).
IN_FLIGHT: Final = 32


class LanedTransport(httpx.AsyncBaseTransport):
    """Several small connection pools ("lanes") instead of one large one; each request takes the
    lane with the fewest requests in flight (HTTP/2, for APNs).

    httpcore walks every connection of a pool whenever it queues or finishes a request, so the
    cost per request grows with the pool: at 32 sends in flight, one pool of 32 connections
    spent ~3.7 ms of CPU per request, 32 pools of one ~1.2 ms (measured against a local FCM
    receiver, bench/bench_notifications.py). Connections stay alive between sends either way.
    """

    def __init__(self, *, lanes: int, per_lane: int, verify: ssl.SSLContext, http2: bool) -> None:
        limits = httpx.Limits(max_connections=per_lane, max_keepalive_connections=per_lane)
        self._lanes = [
            httpx.AsyncHTTPTransport(verify=verify, http2=http2, limits=limits)
            for _ in range(lanes)
        ]
        self._in_flight = [0] * lanes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        lane = min(range(len(self._lanes)), key=self._in_flight.__getitem__)
        self._in_flight[lane] += 1
        try:
            return await self._lanes[lane].handle_async_request(request)
        finally:
            self._in_flight[lane] -= 1

    async def aclose(self) -> None:
        for lane in self._lanes:
            await lane.aclose()


def build_client(
    *, timeout_seconds: float, ca_file: str | None = None, http2: bool = False
) -> httpx.AsyncClient:
    verify = tls_context(ca_file)
    # HTTP/1.1 (FCM, Web Push, SMS, webhooks) goes through our keep-alive transport: httpx's
    # own cost ~1 ms of CPU per request, ours ~0.35 ms (notifications/keepalive.py). HTTP/2
    # (APNs) multiplexes many streams on one connection: a few lanes of httpx's are enough.
    transport: httpx.AsyncBaseTransport = (
        LanedTransport(lanes=4, per_lane=1, verify=verify, http2=True)
        if http2
        else KeepAliveTransport(verify=verify, max_connections=IN_FLIGHT)
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds),
        transport=transport,
        follow_redirects=False,
        # Endpoints are configured explicitly; ambient proxy variables are not consulted.
        trust_env=False,
        headers={"User-Agent": "Interlude-Notifications/1"},
    )


async def deliver(
    message: Message, channel: Channel, attempt: Callable[[], Awaitable[Receipt]]
) -> Receipt:
    """Run one send attempt and turn every classified or transport failure into a receipt."""
    try:
        return await attempt()
    except DeliveryError as error:
        return error.receipt(message, channel)
    except httpx.TransportError as error:
        return classify_transport_error(error).receipt(message, channel)
