"""The service registry: typed keys, one provider per key, revoked with its provider."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast, overload

from nexus.errors import ServiceConflictError, ServiceNotFoundError

T = TypeVar("T")


class ServiceKey(Generic[T]):
    """A typed name for a service: `DATABASE = ServiceKey[Database]("database")`."""

    __slots__ = ("name", "type")

    def __init__(self, name: str, type: type[T] | None = None) -> None:
        if not name or any(not part.isidentifier() for part in name.split(".")):
            raise ValueError(f"Service key {name!r} must be a dotted name, e.g. 'database'.")
        self.name = name
        self.type = type

    def __repr__(self) -> str:
        return f"ServiceKey({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServiceKey) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


#: A `ServiceKey[T]`, or a class that serves as its own key.
KeyLike = ServiceKey[T] | type[T]


def key_name(key: ServiceKey[Any] | type[Any]) -> str:
    """The registry name of a key: its name, or a class's dotted path."""
    if isinstance(key, ServiceKey):
        return key.name
    if isinstance(key, type):
        return f"{key.__module__}.{key.__qualname__}"
    raise TypeError(f"A service key must be a ServiceKey or a class, got {key!r}.")


def _expected_type(key: ServiceKey[Any] | type[Any]) -> type[Any] | None:
    expected = key.type if isinstance(key, ServiceKey) else key
    # Protocols and generic aliases cannot be checked with isinstance; trust the type checker.
    if not isinstance(expected, type) or getattr(expected, "_is_protocol", False):
        return None
    return expected


@dataclass(frozen=True, slots=True)
class _Scoped:
    """A scoped service's factory, and how a consumer's instance is released."""

    factory: Callable[[str], Any]
    release: Callable[[Any], object] | None

    def __call__(self, consumer: str) -> Any:
        return self.factory(consumer)


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A registered service, for introspection."""

    key: str
    provider: str
    type: str


class ServiceRegistry:
    """All services provided by active plugins."""

    def __init__(self) -> None:
        # name -> (service or per-plugin factory, provider, whether it is a factory)
        self._services: dict[str, tuple[object, str, bool]] = {}

    def provide(self, key: KeyLike[T], service: T, *, provider: str) -> Callable[[], None]:
        """Register `service` under `key` for `provider`; returns a callable that revokes it."""
        name = key_name(key)
        expected = _expected_type(key)
        if expected is not None and not isinstance(service, expected):
            raise TypeError(
                f"Plugin {provider!r} provides service {name!r} as a "
                f"{type(service).__name__}, but the key expects {expected.__name__}."
            )
        return self._add(name, (service, provider, False))

    def provide_scoped(
        self,
        key: KeyLike[T],
        factory: Callable[[str], T],
        *,
        provider: str,
        release: Callable[[T], object] | None = None,
    ) -> Callable[[], None]:
        """Register a factory called with each requesting plugin's name (e.g. a cache namespace).

        `release(instance)`, if given, is for the consumer's context to call when it stops.
        """
        if not callable(factory) or (release is not None and not callable(release)):
            raise TypeError(
                f"Plugin {provider!r}: provide_scoped needs a factory (and a callable release), "
                f"got {factory!r} and {release!r}."
            )
        return self._add(key_name(key), (_Scoped(factory, release), provider, True))

    def _add(self, name: str, entry: tuple[object, str, bool]) -> Callable[[], None]:
        current = self._services.get(name)
        if current is not None:
            raise ServiceConflictError(name, current[1], entry[1])
        self._services[name] = entry

        def revoke() -> None:
            if self._services.get(name) is entry:
                del self._services[name]

        return revoke

    @overload
    def get(self, key: ServiceKey[T], *, requester: str = ...) -> T: ...
    @overload
    def get(self, key: type[T], *, requester: str = ...) -> T: ...
    def get(self, key: KeyLike[T], *, requester: str = "nexus") -> T:
        """The service registered under `key`; ServiceNotFoundError when there is none."""
        entry = self._services.get(key_name(key))
        if entry is None:
            raise ServiceNotFoundError(key_name(key), requester)
        service, _, is_scoped = entry
        if is_scoped:
            return cast(T, cast(Callable[[str], object], service)(requester))
        return cast(T, service)

    def registration(self, key: KeyLike[Any] | str) -> object | None:
        """An object identifying the current registration of `key` (new after re-providing)."""
        return self._services.get(key if isinstance(key, str) else key_name(key))

    def release_of(self, key: KeyLike[Any] | str) -> Callable[[Any], object] | None:
        """What releases a consumer's instance of the scoped service `key`, if anything."""
        entry = self._services.get(key if isinstance(key, str) else key_name(key))
        if entry is None or not isinstance(entry[0], _Scoped):
            return None
        return entry[0].release

    def is_scoped(self, key: KeyLike[Any] | str) -> bool:
        """Whether `key` is provided per requesting plugin."""
        entry = self._services.get(key if isinstance(key, str) else key_name(key))
        return entry is not None and entry[2]

    def has(self, key: KeyLike[Any]) -> bool:
        """Whether a service is registered under `key`."""
        return key_name(key) in self._services

    def provider_of(self, key: KeyLike[Any] | str) -> str | None:
        """The plugin that provides `key`, if any."""
        name = key if isinstance(key, str) else key_name(key)
        entry = self._services.get(name)
        return entry[1] if entry else None

    def revoke_all(self, provider: str) -> list[str]:
        """Remove every service `provider` registered; returns their key names."""
        names = [name for name, (_, owner, _) in self._services.items() if owner == provider]
        for name in names:
            del self._services[name]
        return names

    def entries(self) -> list[ServiceInfo]:
        """Every registered service, sorted by key."""
        return [
            ServiceInfo(name, provider, "scoped" if scoped else type(service).__name__)
            for name, (service, provider, scoped) in sorted(self._services.items())
        ]
