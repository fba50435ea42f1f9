"""The service registry: typed keys, one provider per key, revocation."""

from __future__ import annotations

import pytest

from nexus import ServiceKey
from nexus.errors import ServiceConflictError, ServiceNotFoundError
from nexus.kernel.services import ServiceRegistry


class Clock:
    def now(self) -> int:
        return 42


CLOCK = ServiceKey[Clock]("clock", Clock)


def test_provide_get_and_revoke() -> None:
    """A provided service is found by key until it is revoked."""
    registry = ServiceRegistry()
    revoke = registry.provide(CLOCK, Clock(), provider="time")
    assert registry.get(CLOCK).now() == 42
    assert registry.provider_of(CLOCK) == "time"
    revoke()
    assert not registry.has(CLOCK)
    with pytest.raises(ServiceNotFoundError, match="Plugin 'web' needs service 'clock'"):
        registry.get(CLOCK, requester="web")


def test_type_as_its_own_key() -> None:
    """A class can serve as its own key."""
    registry = ServiceRegistry()
    registry.provide(Clock, Clock(), provider="time")
    assert registry.get(Clock).now() == 42
    assert registry.entries()[0].key.endswith("test_services.Clock")


def test_second_provider_conflicts() -> None:
    """Only one plugin may provide a key; the error names both."""
    registry = ServiceRegistry()
    registry.provide(CLOCK, Clock(), provider="time")
    with pytest.raises(
        ServiceConflictError, match="'ntp' cannot provide service 'clock': plugin 'time'"
    ):
        registry.provide(CLOCK, Clock(), provider="ntp")


def test_wrong_type_is_rejected_at_registration() -> None:
    """A service that is not an instance of the key's type is refused at once."""
    registry = ServiceRegistry()
    with pytest.raises(
        TypeError, match="provides service 'clock' as a str, but the key expects Clock"
    ):
        registry.provide(CLOCK, "not a clock", provider="time")  # type: ignore[arg-type]


def test_revoke_all_removes_only_that_provider() -> None:
    """revoke_all removes one provider's services and leaves the others."""
    registry = ServiceRegistry()
    registry.provide(CLOCK, Clock(), provider="time")
    registry.provide(ServiceKey[str]("greeting"), "hi", provider="hello")
    assert registry.revoke_all("time") == ["clock"]
    assert [info.key for info in registry.entries()] == ["greeting"]


def test_invalid_key_name() -> None:
    """Key names are dotted identifiers."""
    with pytest.raises(ValueError, match="must be a dotted name"):
        ServiceKey[int]("not a name")
