"""Assemble the platform's middleware around an ASGI app, in one documented order."""

from __future__ import annotations

from collections.abc import Callable

from nexus.http.access_log import AccessLogMiddleware
from nexus.http.body_limit import BodyLimitMiddleware
from nexus.http.cors import CORSMiddleware
from nexus.http.gzip import GZipMiddleware
from nexus.http.proxy import ProxyHeadersMiddleware, TrustedHostMiddleware
from nexus.http.rate_limit import (
    KeyFunction,
    MemoryRateLimitStore,
    RateLimitMiddleware,
    RateLimitStore,
    key_by_user_or_ip,
)
from nexus.http.request_id import RequestIdMiddleware
from nexus.http.security_headers import SecurityHeadersMiddleware
from nexus.http.settings import HttpSettings
from nexus.http.types import ASGIApp


def build_middleware_stack(
    app: ASGIApp,
    settings: HttpSettings,
    *,
    debug: bool,
    rate_limit_store: RateLimitStore | None = None,
    rate_limit_key: KeyFunction = key_by_user_or_ip,
    authentication: Callable[[ASGIApp], ASGIApp] | None = None,
) -> ASGIApp:
    """Wrap ``app`` in the HTTP middleware ``settings`` enable; disabled layers cost nothing.

    Outermost first, each for a reason:

    1. proxy headers: the real client address and scheme, before anything reads them;
    2. request id: every response below, even a rejection, carries ``X-Request-ID``;
    3. access log: every request is logged, rejected ones too, with its id and final status;
    4. security headers: on every response, errors and rejections included;
    5. trusted hosts: a forged Host is refused before any work is done for it;
    6. CORS: preflights are answered here (never rate limited or body-checked), and the 413
       and 429 below carry CORS headers, so a browser page can read why it was refused;
    7. body limit: an oversized upload is refused before it costs a rate-limit token;
    7a. ``authentication``, if given (plugins' authentication-stage middleware): the caller
       is known before rate limiting, so limits can be per user;
    8. rate limit: after the cheap refusals, right before the application's work;
    9. gzip: innermost, so it compresses only what the application produced.

    ``debug`` is accepted for symmetry with ``install_problem_handlers``; no layer needs it yet.
    ``rate_limit_store`` defaults to a ``MemoryRateLimitStore`` (one per process).
    """
    del debug  # no layer behaves differently in debug mode (yet)
    if settings.gzip.enabled:
        app = GZipMiddleware(
            app,
            minimum_size=settings.gzip.minimum_size,
            compress_level=settings.gzip.compress_level,
        )
    limits = settings.rate_limit
    if limits.enabled:
        store = rate_limit_store or MemoryRateLimitStore(max_keys=limits.max_keys)
        app = RateLimitMiddleware(
            app,
            rate=limits.rate,
            burst=limits.burst,
            store=store,
            key=rate_limit_key,
            exempt_paths=limits.exempt_paths,
        )
    if authentication is not None:
        # Identify the caller before rate limiting, so limits can be per user.
        app = authentication(app)
    if settings.body_limit.enabled:
        app = BodyLimitMiddleware(app, max_body_size=settings.body_limit.max_bytes)
    cors = settings.cors
    if cors.is_enabled:
        app = CORSMiddleware(
            app,
            allow_origins=cors.allow_origins,
            allow_methods=cors.allow_methods,
            allow_headers=cors.allow_headers,
            expose_headers=cors.expose_headers,
            allow_credentials=cors.allow_credentials,
            max_age=cors.max_age,
        )
    if settings.trusted_hosts and "*" not in settings.trusted_hosts:
        app = TrustedHostMiddleware(app, allowed_hosts=settings.trusted_hosts)
    headers = settings.security_headers
    if headers.enabled:
        app = SecurityHeadersMiddleware(
            app,
            content_security_policy=headers.content_security_policy,
            csp_overrides=headers.csp_overrides,
            frame_options=headers.frame_options,
            referrer_policy=headers.referrer_policy,
            hsts=headers.hsts,
        )
    if settings.access_log.enabled:
        app = AccessLogMiddleware(app)
    app = RequestIdMiddleware(app)
    if settings.trusted_proxies:
        app = ProxyHeadersMiddleware(app, trusted_proxies=settings.trusted_proxies)
    return app
