"""The HTTP API under /api/user_manager: register, verify an email address, look a user up."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nexus import PluginContext
from nexus.http.problems import ProblemError

from .store import (
    EmailTakenError,
    RegistrationError,
    User,
    UserLimitError,
    UserStore,
    VerificationError,
)

if TYPE_CHECKING:
    from .plugin import Settings

# Deliberately loose: the only real check of an address is the email that reaches it.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PROBLEM = "application/problem+json"


class NewUser(BaseModel):
    """A registration request."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320, pattern=EMAIL_PATTERN, examples=["ada@example.com"])
    name: str = Field(min_length=1, max_length=200, examples=["Ada Lovelace"])
    password: str | None = Field(
        None, min_length=8, max_length=128, description="Optional; stored as a scrypt hash."
    )

    @field_validator("email")
    @classmethod
    def _normalise_email(cls, value: str) -> str:
        return value.strip().lower()


class UserOut(BaseModel):
    """A user as the API shows it (never the password or the verification token)."""

    id: str
    email: str
    name: str
    verified: bool
    created_at: dt.datetime
    verified_at: dt.datetime | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        """The API view of `user`."""
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            verified=user.is_verified,
            created_at=user.created_at,
            verified_at=user.verified_at,
        )


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {}}}


def build_router(ctx: PluginContext[Settings], store: UserStore) -> APIRouter:
    """The routes; they read `ctx.config` on every request, so a config reload applies at once."""
    router = APIRouter()

    @router.post(
        "/users",
        status_code=201,
        summary="Register a user",
        response_description="The new user; its URL is in the Location header.",
        responses={
            409: _problem("The email is registered already, or `max_users` users exist."),
        },
    )
    async def register(body: NewUser, response: Response) -> UserOut:
        """Create a user and publish `user.created`.

        With `email_verification` on, the user starts unverified and the event carries the
        verification token the email_service plugin mails as a link.
        """
        settings = ctx.config
        await ctx.events.publish(
            "user.registration.started", {"email": body.email, "name": body.name}
        )
        ttl = dt.timedelta(seconds=settings.verification_ttl)
        try:
            registration = await store.register(
                email=body.email,
                name=body.name,
                password=body.password,
                max_users=settings.max_users,
                verification_ttl=ttl if settings.email_verification else None,
            )
        except RegistrationError as exc:
            await ctx.events.publish(
                "user.registration.failed", {"email": body.email, "reason": exc.reason}
            )
            raise _registration_problem(exc) from None
        user = registration.user
        # Published after the commit: whoever handles the event finds the user stored.
        data: dict[str, Any] = {"id": user.id, "email": user.email, "name": user.name}
        if registration.verification_token is not None:
            data["verification_token"] = registration.verification_token
        await ctx.events.publish("user.created", data)
        response.headers["Location"] = f"/api/{ctx.name}/users/{user.id}"
        return UserOut.of(user)

    @router.get(
        "/verify",
        summary="Confirm an email address",
        responses={
            400: _problem("The token is unknown or was used already."),
            410: _problem("The token has expired."),
        },
    )
    async def verify(
        token: Annotated[
            str, Query(min_length=1, max_length=128, description="The token from the email.")
        ],
    ) -> UserOut:
        """Mark the token's user verified and publish `user.verified`; a token works once."""
        try:
            user = await store.verify(token)
        except VerificationError as exc:
            status = 410 if exc.reason == "expired" else 400
            raise ProblemError(status, str(exc), title="Verification failed") from None
        await ctx.events.publish("user.verified", {"id": user.id, "email": user.email})
        return UserOut.of(user)

    @router.get(
        "/users/{user_id}",
        summary="Look a user up",
        responses={404: _problem("No user has this id.")},
    )
    async def get_user(user_id: str) -> UserOut:
        """The user with this id."""
        user = await store.get(user_id)
        if user is None:
            raise ProblemError(404, f"No user has id {user_id!r}.", title="User not found")
        return UserOut.of(user)

    return router


def _registration_problem(exc: RegistrationError) -> ProblemError:
    if isinstance(exc, UserLimitError):
        return ProblemError(
            409,
            f"Registration is closed: the user limit of {exc.limit} is reached "
            f"(setting plugins.user_manager.max_users).",
            title="User limit reached",
            max_users=exc.limit,
            setting="plugins.user_manager.max_users",
        )
    if isinstance(exc, EmailTakenError):
        return ProblemError(409, str(exc), title="Email already registered")
    return ProblemError(409, str(exc), title="Registration refused")
