"""Hostile requests against the example application served by a real `nexus run`.

Raw sockets send what HTTP clients refuse to (huge headers, bytes that are not UTF-8);
after each attack the server still answers /livez.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from typing import Any

import httpx
import jwt
import pytest

from nexus.http.problems import PROBLEM_CONTENT_TYPE
from nexus.testing import create_test_app, serve
from tests.reliability.conftest import SIGNING_KEY, ExampleServer

USERS = "/api/user_manager/users"
SCOPES = ["audit:read"]


def raw_request(port: int, data: bytes) -> bytes:
    """Send `data` on a fresh connection; return all the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP/1.1 response."""
    return int(answer.split(b" ", 2)[1])


def assert_alive(server: ExampleServer) -> None:
    assert httpx.get(f"{server.url}/livez").status_code == 200
    assert server.process.poll() is None


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert "traceback" not in problem
    return problem


def test_oversized_body_gets_413_problem(example_server: ExampleServer) -> None:
    """A body over the limit (1 MiB by default) is refused with a 413 problem, unread."""
    body = b'{"email": "a@b.cd", "name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = httpx.post(
        f"{example_server.url}{USERS}", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)
    assert_alive(example_server)


def test_oversized_chunked_body_gets_413(example_server: ExampleServer) -> None:
    """A chunked body without Content-Length is cut off at the limit too."""

    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    response = httpx.post(
        f"{example_server.url}{USERS}",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 413)
    assert_alive(example_server)


def test_oversized_headers_are_refused_by_the_server(example_server: ExampleServer) -> None:
    """Headers far beyond the HTTP parser's limits get a 4xx and a closed connection, no crash."""
    huge = b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n"
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(20000))
    for headers in (huge, many):
        request = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n"
        answer = raw_request(example_server.port, request)
        assert answer == b"" or 400 <= status_of(answer) < 500, answer[:200]
    assert_alive(example_server)


def test_malformed_json_gets_422_problem(example_server: ExampleServer) -> None:
    """A body that is not JSON is a 422 problem naming the decode error."""
    response = httpx.post(
        f"{example_server.url}{USERS}",
        content=b'{"email": "a@b.cd", "name":',
        headers={"content-type": "application/json"},
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["type"] == "json_invalid"


def test_deeply_nested_json_is_refused_without_a_server_error(
    example_server: ExampleServer,
) -> None:
    """JSON nested 100,000 deep (under the body limit) is a 4xx problem, not a 500."""
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        response = httpx.post(
            f"{example_server.url}{USERS}",
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert 400 <= response.status_code < 500, response.text[:300]
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert_alive(example_server)


def test_invalid_utf8_body_gets_a_problem(example_server: ExampleServer) -> None:
    """A JSON body with bytes that are not UTF-8 is a 4xx problem."""
    response = httpx.post(
        f"{example_server.url}{USERS}",
        content=b'{"email": "a@b.cd", "name": "\xff\xfe\xc3"}',
        headers={"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE


@pytest.mark.parametrize(
    "target",
    [b"/api/user_manager/users/%FF%FE", b"/api/user_manager/users/\xff\xfe", b"/api/\xc3(/x"],
)
def test_invalid_utf8_in_the_path_gets_no_server_error(
    example_server: ExampleServer, target: bytes
) -> None:
    """A path with bytes (raw or percent-encoded) that are not UTF-8 gets a 4xx, no 500."""
    answer = raw_request(
        example_server.port,
        b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    assert 400 <= status_of(answer) < 500, answer[:300]
    assert_alive(example_server)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/static/..%2F..%2Fplugin.py",
        "/admin/static/..%2fmanifest.json",
        "/admin/static/%2e%2e%2f%2e%2e%2fsettings.py",
        "/admin/static/....//....//etc/passwd",
        "/admin/static/%2Fetc%2Fpasswd",
        "/admin/static/..%5c..%5cplugin.py",
        "/admin/../../etc/passwd",
        "/admin/static/admin.css%00.py",
    ],
)
def test_path_traversal_reaches_no_file(example_server: ExampleServer, path: str) -> None:
    """Traversal attempts against /admin's static assets find no file outside them."""
    answer = raw_request(
        example_server.port,
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(),
    )
    status = status_of(answer)
    assert status in (400, 404), answer[:300]
    assert b"root:" not in answer and b"import " not in answer and b"manifest" not in answer


def test_admin_static_serves_only_its_assets(example_server: ExampleServer) -> None:
    """A listed asset is served; an unlisted name beside it is a 404 problem."""
    assert httpx.get(f"{example_server.url}/admin/static/admin.css").status_code == 200
    assert_problem(httpx.get(f"{example_server.url}/admin/static/pages.py"), 404)


@pytest.mark.parametrize(
    "incoming",
    [b"abc\rSet-Cookie: x=1", b"abc\x00def", b"a" * 200, b"<script>", b"id with spaces"],
)
def test_unsafe_request_ids_are_replaced(example_server: ExampleServer, incoming: bytes) -> None:
    """An X-Request-ID with control characters, markup or over 128 bytes is not echoed."""
    answer = raw_request(
        example_server.port,
        b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Request-ID: "
        + incoming
        + b"\r\n\r\n",
    )
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert b"Set-Cookie: x=1" not in head
    if status_of(answer) == 200:
        [echoed] = [
            line for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id")
        ]
        value = echoed.split(b":", 1)[1].strip()
        assert value != incoming and 0 < len(value) <= 128
        assert value.replace(b"-", b"").isalnum()
    else:
        assert status_of(answer) == 400  # the HTTP parser refused the header itself


def test_a_safe_request_id_is_kept(example_server: ExampleServer) -> None:
    """A well-formed X-Request-ID is echoed unchanged (and so correlates logs)."""
    response = httpx.get(f"{example_server.url}/livez", headers={"X-Request-ID": "req-42.a:b"})
    assert response.headers["x-request-id"] == "req-42.a:b"


# JWT attacks: each forged token is refused with a 401 problem carrying WWW-Authenticate.


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hs256(claims: dict[str, Any], key: bytes, *, alg: str = "HS256", **header: str) -> str:
    """A JWT signed by hand: PyJWT refuses empty keys, an attacker does not."""
    signing_input = f"{_b64({'alg': alg, 'typ': 'JWT', **header})}.{_b64(claims)}"
    digest = hashlib.sha512 if alg == "HS512" else hashlib.sha256
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _forged(server: ExampleServer) -> dict[str, str]:
    key = base64.b64decode(SIGNING_KEY)
    user = _claims(server.user_token)
    escalated = {**user, "roles": ["admin"]}
    now = int(time.time())
    expired = {**_claims(server.admin_token), "iat": now - 7200, "nbf": now - 7200}
    expired["exp"] = now - 3600
    head, _, signature = server.user_token.split(".")
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(escalated)}.",
        "alg None": f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{_b64(escalated)}.",
        "RS256 header": f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{_b64(escalated)}."
        + _b64(b"\x00" * 256),
        "HS256 signed with an empty key": _hs256(escalated, b""),
        "HS512 with the real key": _hs256(escalated, key, alg="HS512"),
        "roles edited, signature kept": f"{head}.{_b64(escalated)}.{signature}",
        "expired": jwt.encode(expired, key, algorithm="HS256"),
        "kid path injection": _hs256(escalated, b"", kid="../../../../dev/null"),
        "kid SQL injection": _hs256(escalated, b"x", kid="' UNION SELECT 'x' --"),
        "jku header": jwt.encode(
            escalated, b"x" * 32, algorithm="HS256", headers={"jku": "http://127.0.0.1:1/k"}
        ),
    }


def test_forged_tokens_are_refused(example_server: ExampleServer) -> None:
    """alg none, RS/HS confusion, a wrong key, edited claims, expiry and kid tricks all get 401."""
    for attack, token in _forged(example_server).items():
        for path in ("/api/auth/me", "/admin/api/plugins"):
            response = httpx.get(
                f"{example_server.url}{path}", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401, f"{attack} on {path}: {response.text}"
            assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
            assert response.headers["www-authenticate"].startswith("Bearer"), attack


def test_expired_token_signed_right_is_the_only_difference(example_server: ExampleServer) -> None:
    """The same claims re-signed with the real key and a live expiry are accepted (control)."""
    key = base64.b64decode(SIGNING_KEY)
    token = jwt.encode(_claims(example_server.user_token), key, algorithm="HS256")
    response = httpx.get(
        f"{example_server.url}/api/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text


def _api_key(server: ExampleServer, token: str, scopes: list[str]) -> str:
    response = httpx.post(
        f"{server.url}/api/auth/api-keys",
        json={"name": f"k{time.monotonic_ns()}", "scopes": scopes},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def test_non_admins_cannot_operate_plugins_or_read_config(example_server: ExampleServer) -> None:
    """A user's token or a narrowly scoped API key gets 403 on plugin operations and config."""
    credentials = {
        "user token": {"Authorization": f"Bearer {example_server.user_token}"},
        "admin's api key scoped to audit:read": {
            "Authorization": f"Bearer {_api_key(example_server, example_server.admin_token, SCOPES)}"
        },
    }
    for label, headers in credentials.items():
        for method, path in [
            ("POST", "/admin/api/plugins/analytics/disable"),
            ("POST", "/admin/api/plugins/analytics/reload"),
            ("POST", "/admin/api/plugins/auth/disable"),
            ("POST", "/admin/api/plugins/analytics/enable"),
            ("GET", "/admin/api/config"),
            ("GET", "/admin/api/plugins"),
        ]:
            response = httpx.request(method, f"{example_server.url}{path}", headers=headers)
            assert response.status_code in (401, 403), f"{label} {method} {path}: {response.text}"
            assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    ready = httpx.get(f"{example_server.url}/readyz").json()
    assert ready["plugins"]["analytics"]["state"] == "active"
    assert ready["plugins"]["auth"]["state"] == "active"


def test_huge_page_cursor_is_a_422_not_a_500(example_server: ExampleServer) -> None:
    """An audit page cursor beyond 64-bit integers is refused (it overflowed SQLite: a 500)."""
    for path in ("/api/audit/entries", "/admin/api/audit"):
        response = httpx.get(
            f"{example_server.url}{path}",
            params={"before_id": str(2**100)},
            headers={"Authorization": f"Bearer {example_server.admin_token}"},
        )
        assert_problem(response, 422)


def test_cors_preflight_from_an_unlisted_origin_is_not_allowed(
    example_server: ExampleServer,
) -> None:
    """With no origins configured, neither a preflight nor a request grants any origin."""
    preflight = httpx.options(
        f"{example_server.url}{USERS}",
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = httpx.get(f"{example_server.url}/livez", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_lets_only_listed_origins_in() -> None:
    """With one origin listed, another origin gets no CORS grant and a disallowed preflight."""
    cors = {"allow_origins": ["https://app.example"], "allow_methods": ["GET", "POST"]}
    app = create_test_app(config={"http": {"cors": cors}})
    async with serve(app) as client:
        listed = await client.get("/livez", headers={"Origin": "https://app.example"})
        assert listed.headers["access-control-allow-origin"] == "https://app.example"
        for origin in ("https://evil.example", "https://app.example.evil.example", "null"):
            response = await client.options(
                "/livez", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}
            )
            assert "access-control-allow-origin" not in response.headers, origin
            assert response.status_code in (400, 403), origin


async def test_forged_forwarded_for_does_not_escape_the_rate_limit() -> None:
    """Without trusted proxies, a new X-Forwarded-For per request still hits the caller's limit."""
    app = create_test_app(config={"http": {"rate_limit": {"rate": 0.001, "burst": 3}}})
    async with serve(app) as client:
        statuses = [
            (await client.get("/nothing", headers={"X-Forwarded-For": f"10.0.0.{i}"})).status_code
            for i in range(6)
        ]
    assert statuses[:3] == [404, 404, 404]
    assert statuses[3:] == [429, 429, 429]


async def test_forwarded_for_from_a_trusted_proxy_is_honoured() -> None:
    """Behind a listed proxy, each forwarded client address has its own bucket (control)."""
    http = {"rate_limit": {"rate": 0.001, "burst": 1}, "trusted_proxies": ["127.0.0.1"]}
    app = create_test_app(config={"http": http})
    async with serve(app) as client:
        statuses = [
            (await client.get("/nothing", headers={"X-Forwarded-For": f"10.0.0.{i}"})).status_code
            for i in range(4)
        ]
        again = await client.get("/nothing", headers={"X-Forwarded-For": "10.0.0.0"})
    assert statuses == [404, 404, 404, 404]
    assert again.status_code == 429
    assert again.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert int(again.headers["retry-after"]) >= 1
