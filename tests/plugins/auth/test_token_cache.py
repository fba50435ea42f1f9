"""`verified_token_cache_size`: how many verified access tokens skip their signature check."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nexus.http.app import NexusApp
from nexus.plugins.auth import AuthSettings
from nexus.plugins.auth.tokens import AccessClaims
from nexus.testing import serve
from tests.plugins.auth.conftest import AppFactory, auth_of


def count_verifications(monkeypatch: pytest.MonkeyPatch, app: NexusApp) -> list[str]:
    """Record each token the running auth service checks the signature of (and still check)."""
    tokens = auth_of(app).tokens
    verify: Callable[[str], AccessClaims] = tokens.verify
    checked: list[str] = []

    def counting(token: str) -> AccessClaims:
        checked.append(token)
        return verify(token)

    monkeypatch.setattr(tokens, "verify", counting)
    return checked


def test_default_remembers_ten_thousand_tokens() -> None:
    """Unless configured, up to 10,000 verified tokens are remembered."""
    assert AuthSettings().verified_token_cache_size == 10_000


def test_negative_size_is_refused() -> None:
    """A negative cache size is a configuration error."""
    with pytest.raises(ValueError, match="verified_token_cache_size"):
        AuthSettings(verified_token_cache_size=-1)


async def test_a_remembered_token_is_verified_once(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default cache, a token sent again is not re-verified."""
    app = make_app()
    async with serve(app) as client:
        checked = count_verifications(monkeypatch, app)
        token, _ = auth_of(app).tokens.issue("u1", "ada", ["admin"])
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(3):
            assert (await client.get("/api/auth/me", headers=headers)).status_code == 200
        assert checked == [token]


async def test_size_zero_verifies_every_request(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`verified_token_cache_size: 0` checks the token's signature on each request."""
    app = make_app(auth={"verified_token_cache_size": 0})
    async with serve(app) as client:
        checked = count_verifications(monkeypatch, app)
        token, _ = auth_of(app).tokens.issue("u1", "ada", ["admin"])
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(3):
            response = await client.get("/api/auth/me", headers=headers)
            assert response.status_code == 200
            assert response.json()["username"] == "ada"
        assert checked == [token] * 3


async def test_the_oldest_token_is_forgotten_past_the_size(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the configured size the oldest remembered token is dropped and verified again."""
    app = make_app(auth={"verified_token_cache_size": 2})
    async with serve(app) as client:
        checked = count_verifications(monkeypatch, app)
        issue = auth_of(app).tokens.issue
        first, second, third = (issue(f"u{n}", f"user{n}", [])[0] for n in range(3))
        for token in (first, second, second, third, third, first):
            headers = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/api/auth/me", headers=headers)).status_code == 200
        assert checked == [first, second, third, first]
