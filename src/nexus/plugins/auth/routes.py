"""The auth plugin's HTTP API under /api/auth: tokens, the current principal, API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import OAuth2PasswordRequestFormStrict
from pydantic import BaseModel, Field

from nexus.http.identity import get_client_host
from nexus.http.problems import ProblemError
from nexus.plugins.auth.dependencies import CurrentPrincipal, unauthorized
from nexus.plugins.auth.errors import (
    InvalidCredentialsError,
    InvalidTokenError,
    LoginThrottledError,
    NotFoundError,
    ScopeError,
)
from nexus.plugins.auth.service import Auth

try:
    import python_multipart  # noqa: F401 - FastAPI parses the OAuth2 login form with it
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "The auth plugin's login form needs python-multipart, which is not installed. "
        "Install it with: pip install 'nexus-platform[auth]'"
    ) from exc

_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class RefreshIn(BaseModel):
    """A refresh token to exchange or revoke."""

    refresh_token: str = Field(min_length=1, max_length=512)


class ApiKeyIn(BaseModel):
    """A new API key: a name, its scopes (permissions you hold) and an optional expiry."""

    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=100)
    expires_at: datetime | None = None


def build_router(auth: Auth) -> APIRouter:
    """The routes, bound to one Auth service."""
    router = APIRouter()

    @router.post("/token", summary="Sign in (OAuth2 password flow)")
    async def token(
        request: Request, form: Annotated[OAuth2PasswordRequestFormStrict, Depends()]
    ) -> Response:
        try:
            pair = await auth.login(
                form.username, form.password, client_ip=get_client_host(request.scope)
            )
        except LoginThrottledError as exc:
            raise ProblemError(
                429, str(exc), headers={"Retry-After": str(exc.retry_after)}
            ) from None
        except InvalidCredentialsError as exc:
            raise unauthorized(None, str(exc)) from None
        return JSONResponse(pair.as_dict(), headers=_NO_STORE)

    @router.post("/refresh", summary="Exchange a refresh token for new tokens")
    async def refresh(request: Request, body: RefreshIn) -> Response:
        try:
            pair = await auth.refresh(body.refresh_token, client_ip=get_client_host(request.scope))
        except InvalidTokenError as exc:
            raise unauthorized(str(exc)) from None
        return JSONResponse(pair.as_dict(), headers=_NO_STORE)

    @router.post("/logout", status_code=204, summary="Revoke a session (refresh token family)")
    async def logout(body: RefreshIn) -> Response:
        # Like RFC 7009, an unknown token is not an error: the session is gone either way.
        await auth.revoke(body.refresh_token)
        return Response(status_code=204)

    @router.get("/me", summary="The signed-in user or API key")
    async def me(principal: CurrentPrincipal) -> dict[str, Any]:
        return principal.as_dict()

    @router.post("/api-keys", status_code=201, summary="Create an API key (shown once)")
    async def create_api_key(principal: CurrentPrincipal, body: ApiKeyIn) -> Response:
        try:
            record, secret = await auth.create_api_key(
                principal, body.name, body.scopes, expires_at=body.expires_at
            )
        except ScopeError as exc:
            raise ProblemError(403, str(exc)) from None
        except ValueError as exc:
            raise ProblemError(400, str(exc)) from None
        return JSONResponse({**record.as_dict(), "key": secret}, 201, headers=_NO_STORE)

    @router.get("/api-keys", summary="Your API keys (never their secrets)")
    async def list_api_keys(principal: CurrentPrincipal) -> list[dict[str, Any]]:
        return [key.as_dict() for key in await auth.api_keys(principal)]

    @router.delete("/api-keys/{key_id}", status_code=204, summary="Revoke an API key")
    async def revoke_api_key(principal: CurrentPrincipal, key_id: str) -> Response:
        try:
            await auth.revoke_api_key(principal, key_id)
        except NotFoundError as exc:
            raise ProblemError(404, str(exc)) from None
        return Response(status_code=204)

    return router
