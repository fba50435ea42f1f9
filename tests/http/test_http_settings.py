"""The http: configuration section: secure defaults, and every mistake reported."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nexus.http.settings import HttpSettings


def test_defaults_are_secure() -> None:
    """By default: no CORS, rate limit, 1 MiB bodies, security headers, no trusted proxies."""
    settings = HttpSettings()
    assert not settings.cors.is_enabled
    assert settings.rate_limit.enabled
    assert settings.body_limit.max_bytes == 1024 * 1024
    assert settings.security_headers.enabled
    assert settings.security_headers.frame_options == "DENY"
    assert settings.trusted_proxies == []
    assert settings.trusted_hosts == []


def test_unknown_keys_are_refused() -> None:
    """A misspelt key is an error naming its path, not silently ignored."""
    with pytest.raises(ValidationError, match=r"cors\.allow_origin\n  Extra inputs"):
        HttpSettings.model_validate({"cors": {"allow_origin": ["https://a.example"]}})


def test_all_problems_are_reported_at_once() -> None:
    """Several mistakes in the section come back in one error."""
    with pytest.raises(ValidationError) as caught:
        HttpSettings.model_validate(
            {
                "trusted_proxies": ["proxy.internal"],
                "trusted_hosts": ["https://api.example.com"],
                "cors": {"allow_origins": ["app.example.com"]},
                "body_limit": {"max_bytes": -1},
            }
        )
    locations = sorted(".".join(map(str, error["loc"])) for error in caught.value.errors())
    assert locations == [
        "body_limit.max_bytes",
        "cors.allow_origins",
        "trusted_hosts",
        "trusted_proxies",
    ]
    assert "'proxy.internal' is not an IP address or network" in str(caught.value)
    assert "'app.example.com' is not an origin" in str(caught.value)


def test_credentials_with_any_origin_are_refused() -> None:
    """allow_credentials with origin "*" is a configuration error."""
    with pytest.raises(ValidationError, match="allow_credentials cannot be combined"):
        HttpSettings.model_validate({"cors": {"allow_origins": ["*"], "allow_credentials": True}})


def test_header_values_cannot_break_lines() -> None:
    """A policy containing a line break could inject headers and is refused."""
    with pytest.raises(ValidationError, match="cannot contain line breaks"):
        HttpSettings.model_validate(
            {"security_headers": {"content_security_policy": "default-src 'none'\r\nX-Evil: 1"}}
        )


def test_csp_override_prefixes_are_paths() -> None:
    """A CSP override keyed by something other than a path is refused."""
    with pytest.raises(ValidationError, match="path prefix 'admin' must start with '/'"):
        HttpSettings.model_validate({"security_headers": {"csp_overrides": {"admin": "x"}}})


def test_valid_section_is_accepted() -> None:
    """A realistic production section validates as written."""
    settings = HttpSettings.model_validate(
        {
            "trusted_hosts": ["api.example.com", "*.example.com", "[::1]", "127.0.0.1"],
            "trusted_proxies": ["10.0.0.0/8", "fd00::1"],
            "cors": {"allow_origins": ["https://app.example.com"], "allow_credentials": True},
            "rate_limit": {"rate": 5, "burst": 20},
        }
    )
    assert settings.cors.is_enabled
    assert settings.rate_limit.burst == 20
