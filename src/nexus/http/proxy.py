"""Behind a reverse proxy: trusted X-Forwarded-* headers, and a Host header allow-list."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from nexus.http.problems import send_problem
from nexus.http.types import ASGIApp, Receive, Scope, Send

_WS_SCHEMES = {"http": "ws", "https": "wss"}
_BAD_HOST = "The Host header names a host this server does not serve."


class ProxyHeadersMiddleware:
    """Take the client address and scheme from ``X-Forwarded-For``/``-Proto`` of trusted proxies.

    The headers are honoured only when the immediate peer is in ``trusted_proxies`` (IP
    addresses, CIDR networks, or ``"*"`` for any peer). The client is the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy: entries further left were
    written by the client and could be forged to dodge rate limits or audit logs.
    """

    def __init__(self, app: ASGIApp, *, trusted_proxies: Sequence[str]) -> None:
        self.app = app
        self.is_any_trusted = "*" in trusted_proxies
        self.networks = tuple(
            ipaddress.ip_network(entry.strip(), strict=False)
            for entry in trusted_proxies
            if entry != "*"
        )
        # Peers are few (the load balancers), so remember the verdict for each one.
        self._is_trusted = lru_cache(maxsize=1024)(self._check)

    def _check(self, host: str) -> bool:
        if self.is_any_trusted:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # a Unix socket path or a name: never a trusted proxy
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        client = scope.get("client")
        if (scope_type == "http" or scope_type == "websocket") and (
            client is not None and self._is_trusted(client[0])
        ):
            forwarded_for: bytes | None = None
            forwarded_proto: bytes | None = None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    # Repeated headers are one list, in order (RFC 9110 5.3).
                    forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
                elif name == b"x-forwarded-proto":
                    forwarded_proto = value
            if forwarded_proto is not None:
                # The right-most value is the one our own (trusted) proxy wrote.
                proto = forwarded_proto.decode("latin-1").split(",")[-1].strip().lower()
                if proto in ("http", "https"):
                    scope["scheme"] = proto if scope_type == "http" else _WS_SCHEMES[proto]
            if forwarded_for is not None:
                host = self._client_from(forwarded_for.decode("latin-1"))
                if host is not None:
                    scope["client"] = (host, 0)
        await self.app(scope, receive, send)

    def _client_from(self, forwarded_for: str) -> str | None:
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        for hop in reversed(hops):
            if not hop:
                continue
            if not self._is_trusted(hop):
                return hop
        return hops[0] or None  # every hop was a trusted proxy: the first one is the client


class TrustedHostMiddleware:
    """Refuse requests whose Host header is not allowed, with a 400 problem.

    ``allowed_hosts`` holds names (``api.example.com``) and wildcards (``*.example.com``,
    which does not match ``example.com`` itself) and IP addresses (``::1`` or ``[::1]``);
    ``"*"`` allows every host. Ports are ignored.
    A rejected WebSocket handshake is closed, which the server turns into a 403.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.is_any_host = "*" in allowed_hosts
        names = [host.strip().lower().strip("[]") for host in allowed_hosts if host != "*"]
        self.hosts = frozenset(name for name in names if not name.startswith("*."))
        self.suffixes = tuple(name[1:] for name in names if name.startswith("*."))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if self.is_any_host or (scope_type != "http" and scope_type != "websocket"):
            await self.app(scope, receive, send)
            return
        host = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = _strip_port(value.decode("latin-1")).lower()
                break
        if host in self.hosts or (self.suffixes and host.endswith(self.suffixes)):
            await self.app(scope, receive, send)
        elif scope_type == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await send_problem(send, 400, detail=_BAD_HOST)


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    name, _, _port = host.partition(":")
    return name
