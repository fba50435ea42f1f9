"""Proxy headers only from trusted peers, and the Host header allow-list."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from nexus.http.proxy import ProxyHeadersMiddleware, TrustedHostMiddleware
from nexus.http.rate_limit import RateLimitMiddleware

Connect = Callable[..., httpx.AsyncClient]
PROXY = ("10.0.0.5", 40000)
STRANGER = ("203.0.113.7", 40000)


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    app: FastAPI, connect: Connect
) -> None:
    """A client cannot claim another address or https by sending the headers itself."""
    stack = ProxyHeadersMiddleware(app, trusted_proxies=["10.0.0.0/8"])
    headers = {"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "https"}
    async with connect(stack, client=STRANGER) as client:
        body = (await client.get("/whoami", headers=headers)).json()
    assert body["client"] == "203.0.113.7"
    assert body["scheme"] == "http"


async def test_forwarded_headers_from_a_trusted_proxy_are_honoured(
    app: FastAPI, connect: Connect
) -> None:
    """Behind a trusted proxy the client and scheme come from X-Forwarded-For/-Proto."""
    stack = ProxyHeadersMiddleware(app, trusted_proxies=["10.0.0.0/8"])
    headers = {"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "https"}
    async with connect(stack, client=PROXY) as client:
        body = (await client.get("/whoami", headers=headers)).json()
    assert body["client"] == "192.0.2.1"
    assert body["scheme"] == "https"


async def test_client_is_the_rightmost_untrusted_hop(app: FastAPI, connect: Connect) -> None:
    """Entries left of the first untrusted hop were written by the client and are skipped."""
    stack = ProxyHeadersMiddleware(app, trusted_proxies=["10.0.0.5", "10.0.0.6"])
    headers = [
        (b"X-Forwarded-For", b"1.1.1.1, 192.0.2.1"),
        (b"X-Forwarded-For", b"10.0.0.6"),
    ]
    async with connect(stack, client=PROXY) as client:
        body = (await client.get("/whoami", headers=headers)).json()
    assert body["client"] == "192.0.2.1"


async def test_forged_forwarded_for_cannot_dodge_the_rate_limit(
    app: FastAPI, connect: Connect
) -> None:
    """A client rotating X-Forwarded-For still hits its own address's bucket."""
    limited = RateLimitMiddleware(app, rate=0.001, burst=2)
    stack = ProxyHeadersMiddleware(limited, trusted_proxies=["10.0.0.0/8"])
    async with connect(stack, client=STRANGER) as client:
        statuses = [
            (await client.get("/hello", headers={"X-Forwarded-For": f"192.0.2.{n}"})).status_code
            for n in range(3)
        ]
    assert statuses == [200, 200, 429]


async def test_trusted_proxy_clients_get_their_own_buckets(app: FastAPI, connect: Connect) -> None:
    """Behind a trusted proxy, each forwarded client is limited separately."""
    limited = RateLimitMiddleware(app, rate=0.001, burst=1)
    stack = ProxyHeadersMiddleware(limited, trusted_proxies=["10.0.0.0/8"])
    async with connect(stack, client=PROXY) as client:
        statuses = [
            (await client.get("/hello", headers={"X-Forwarded-For": f"192.0.2.{n}"})).status_code
            for n in range(3)
        ]
    assert statuses == [200, 200, 200]


async def test_star_trusts_every_peer(app: FastAPI, connect: Connect) -> None:
    """With "*" any peer's X-Forwarded-For is believed (for platforms that strip it)."""
    stack = ProxyHeadersMiddleware(app, trusted_proxies=["*"])
    async with connect(stack, client=STRANGER) as client:
        body = (await client.get("/whoami", headers={"X-Forwarded-For": "192.0.2.1"})).json()
    assert body["client"] == "192.0.2.1"


async def test_all_trusted_hops_yield_the_first(app: FastAPI, connect: Connect) -> None:
    """When every hop is a trusted proxy, the left-most one is the client."""
    stack = ProxyHeadersMiddleware(app, trusted_proxies=["10.0.0.0/8"])
    headers = {"X-Forwarded-For": "10.9.9.9, , 10.0.0.6"}
    async with connect(stack, client=PROXY) as client:
        body = (await client.get("/whoami", headers=headers)).json()
    assert body["client"] == "10.9.9.9"


async def test_unix_socket_peer_is_not_trusted(app: FastAPI, connect: Connect) -> None:
    """A peer that is not an IP address (a Unix socket) is never a trusted proxy."""
    stack = ProxyHeadersMiddleware(app, trusted_proxies=["10.0.0.0/8"])
    async with connect(stack, client=("/run/nexus.sock", 0)) as client:
        body = (await client.get("/whoami", headers={"X-Forwarded-For": "192.0.2.1"})).json()
    assert body["client"] == "/run/nexus.sock"


def test_invalid_trusted_proxy_is_refused() -> None:
    """A trusted proxy entry that is not an address or network fails at construction."""
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        ProxyHeadersMiddleware(FastAPI(), trusted_proxies=["proxy.internal"])


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("api.example.com", 200),
        ("API.example.com:8443", 200),
        ("eu.svc.example.com", 200),
        ("svc.example.com", 400),
        ("evil.example", 400),
        ("[::1]:8000", 200),
        ("[::2]", 400),
    ],
)
async def test_host_header_must_be_allowed(
    app: FastAPI, connect: Connect, host: str, status: int
) -> None:
    """Only listed hosts (ports ignored, *.domain for subdomains) are served; others get 400."""
    allowed = ["api.example.com", "*.svc.example.com", "::1"]
    stack = TrustedHostMiddleware(app, allowed_hosts=allowed)
    async with connect(stack) as client:
        response = await client.get("/hello", headers={"Host": host})
    assert response.status_code == status
    if status == 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["title"] == "Bad Request"


async def test_any_host_is_allowed_with_star(app: FastAPI, connect: Connect) -> None:
    """ "*" turns the host check off."""
    async with connect(TrustedHostMiddleware(app, allowed_hosts=["*"])) as client:
        response = await client.get("/hello", headers={"Host": "whatever.example"})
    assert response.status_code == 200
