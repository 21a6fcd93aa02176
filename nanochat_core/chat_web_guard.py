"""Which requests the chat server admits, and how long it waits for them (issue 15, `nanobench serve`).

- :class:`SameOriginOnly` (ASGI middleware): the ``Host`` header must name the address the server is
  bound to (a loopback name for a loopback bind; with a wildcard bind, an IP literal, ``localhost`` or
  this machine's name, plus any ``--allow-host``): a DNS-rebinding page whose own name resolves to
  127.0.0.1 is refused. A present ``Origin`` must be the server's own origin and ``Sec-Fetch-Site``
  must not be ``cross-site``; ``POST`` bodies must be ``application/json`` (which a cross-site form or
  "simple" fetch cannot send without a CORS preflight, and no CORS headers are ever sent).
- :class:`Admission`: at most ``workers + max_queue`` requests in flight or waiting, at most
  ``per_client`` per client address; beyond either, 429 with ``Retry-After``.
- :class:`HeaderTimeoutH11Protocol`: uvicorn's h11 protocol with a deadline for a request's headers
  (uvicorn has none: a client trickling header bytes would hold a connection forever). Body reads are
  bounded by the app (``BODY_TIMEOUT_S``), header size by h11's ``max_incomplete_event_size``.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 16 * 1024
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 64
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_name(host_header: str) -> str:
    """The name part of a Host header (no port, IPv6 brackets removed), lower-cased."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class HostPolicy:
    """The Host names a server bound to `bind` answers to."""

    bind: str
    extra: frozenset[str] = frozenset()

    def allows(self, name: str) -> bool:
        name = name.lower()
        if name in self.extra:
            return True
        bind = self.bind.lower().strip("[]")
        if bind in WILDCARD_BINDS:
            return _is_ip(name) or name in LOOPBACK_NAMES or name in _machine_names()
        if bind in LOOPBACK_NAMES or (_is_ip(bind) and ipaddress.ip_address(bind).is_loopback):
            return name in LOOPBACK_NAMES or name == bind
        return name == bind


def _machine_names() -> set[str]:
    names = {socket.gethostname().lower()}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:
        pass
    return names


def refusal(method: str, headers: dict[str, str], policy: HostPolicy) -> tuple[int, str] | None:
    """(status, reason) when the request must be refused, else None."""
    host = headers.get("host", "")
    if not host:
        return 400, "missing Host header"
    if not policy.allows(host_name(host)):
        return 403, f"Host {host!r} is not this server's address (DNS rebinding protection)"
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.strip().lower():
            return 403, f"cross-site request refused (Origin {origin!r})"
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return 403, "cross-site request refused (Sec-Fetch-Site: cross-site)"
    if method not in ("GET", "HEAD"):
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            return 415, "Content-Type must be application/json"
    return None


class SameOriginOnly:
    """ASGI middleware applying :func:`refusal` to every HTTP request."""

    def __init__(self, app, policy: HostPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            problem = refusal(scope["method"], headers, self.policy)
            if problem is not None:
                status, reason = problem
                body = json.dumps({"error": reason}).encode()
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class Busy(Exception):
    """No room for this request; `retry_after_s` is the advice sent back."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class Admission:
    """Bounded queue and per-client concurrency cap (single event loop: no locks needed)."""

    workers: int
    max_queue: int = 8
    per_client: int = 2
    retry_after_s: int = 5
    pending: int = 0
    by_client: dict[str, int] = field(default_factory=dict)

    def admit(self, client: str) -> "Ticket":
        if self.by_client.get(client, 0) >= self.per_client:
            raise Busy(f"too many concurrent requests from this client (at most {self.per_client})", self.retry_after_s)
        if self.pending >= self.workers + self.max_queue:
            raise Busy(f"server busy: {self.pending} requests in flight or queued", self.retry_after_s)
        self.pending += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1
        return Ticket(self, client)


@dataclass
class Ticket:
    """An admitted request's place; `release()` is idempotent."""

    admission: Admission
    client: str
    released: bool = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        a = self.admission
        a.pending -= 1
        left = a.by_client.get(self.client, 1) - 1
        if left > 0:
            a.by_client[self.client] = left
        else:
            a.by_client.pop(self.client, None)


class HeaderTimeoutH11Protocol(H11Protocol):
    """h11 protocol that closes a connection whose request headers are not complete in time."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = None
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()  # headers complete: the body has its own deadline

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers get the same deadline

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)


def uvicorn_settings() -> dict:
    """uvicorn.Config keyword arguments that bound what a client can hold."""
    return {
        "http": HeaderTimeoutH11Protocol,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "limit_concurrency": MAX_CONNECTIONS,
    }
