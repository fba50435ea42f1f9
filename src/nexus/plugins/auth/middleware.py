"""The authentication-stage middleware: who is calling, decided once per request."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from nexus.http.types import ASGIApp, Receive, Scope, Send
from nexus.kernel.correlation import actor
from nexus.plugins.auth.errors import InvalidTokenError
from nexus.plugins.auth.tokens import API_KEY_MARK

if TYPE_CHECKING:
    from nexus.plugins.auth.principal import Principal
    from nexus.plugins.auth.service import Auth

logger = logging.getLogger("nexus.plugins.auth")

#: `scope["state"]` keys: the Auth service, and why a credential was refused.
SERVICE_KEY: Final = "nexus_auth"
ERROR_KEY: Final = "auth_error"
#: Set (True) when the credential could not be checked because a backend failed.
UNAVAILABLE_KEY: Final = "auth_unavailable"

_AUTHORIZATION: Final = b"authorization"
_API_KEY: Final = b"x-api-key"


class AuthenticationMiddleware:
    """Verify the request's credential and put the Principal in `scope["state"]["user"]`.

    Accepts `Authorization: Bearer <access token or API key>` or `X-API-Key: <API key>`.
    A refused credential does not stop the request here: `scope["state"]["auth_error"]`
    says why, so routes that need a principal answer 401 with that reason and open routes
    still work. The `actor` context variable names the user while the request runs.
    """

    def __init__(self, app: ASGIApp, *, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" and scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state[SERVICE_KEY] = self.auth
        authorization = api_key = None
        for name, value in scope["headers"]:
            if name == _AUTHORIZATION:
                authorization = value
            elif name == _API_KEY:
                api_key = value
        if authorization is None and api_key is None:
            await self.app(scope, receive, send)
            return
        principal = await self._authenticate(state, authorization, api_key)
        if principal is None:
            await self.app(scope, receive, send)
            return
        state["user"] = principal
        token = actor.set(principal.username)
        try:
            await self.app(scope, receive, send)
        finally:
            actor.reset(token)

    async def _authenticate(
        self, state: dict[str, Any], authorization: bytes | None, api_key: bytes | None
    ) -> Principal | None:
        if authorization is not None and api_key is not None:
            state[ERROR_KEY] = "Send one credential: Authorization or X-API-Key, not both."
            return None
        try:
            if api_key is not None:
                return await self.auth.authenticate_api_key(api_key.decode("latin-1").strip())
            header = (authorization or b"").decode("latin-1").strip()
            scheme, _, credential = header.partition(" ")
            credential = credential.strip()
            if scheme.lower() != "bearer" or not credential:
                state[ERROR_KEY] = "Use `Authorization: Bearer <token or API key>`."
                return None
            if credential.startswith(API_KEY_MARK):
                return await self.auth.authenticate_api_key(credential)
            return self.auth.credentials.authenticate_token(credential)
        except InvalidTokenError as exc:
            state[ERROR_KEY] = str(exc)
        except Exception:  # the database may be down: say so rather than fail every request
            logger.exception("Could not check a credential")
            state[ERROR_KEY] = "Credentials cannot be checked right now; retry shortly."
            state[UNAVAILABLE_KEY] = True
        return None
