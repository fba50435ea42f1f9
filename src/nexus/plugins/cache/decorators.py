"""`cached`: keep the results of an async function or method in a Cache, keyed by its arguments.

```python
from nexus.plugins.cache import CACHE, Cache, cached


class Weather:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    @cached(lambda self: self.cache, ttl=60)
    async def forecast(self, city: str, days: int = 3) -> dict[str, Any]:
        ...  # the expensive call


weather = Weather(ctx.services.get(CACHE))
await weather.forecast("Oslo")               # computed, then kept for 60 s
await weather.forecast(city="Oslo", days=3)  # the same call, so the same key: a cache hit
await weather.forecast.invalidate("Oslo")    # forget it
```

The cache is given directly (`@cached(cache, ttl=60)`), or as a getter called with the
function's first argument (`lambda self: self.cache`) or with none (`lambda: registry.cache`),
so the cache can be chosen when the function is called rather than when it is defined.

The default key is `<module>.<qualified name>:<digest>`, the digest being a hash of the
arguments after binding them to the signature (defaults filled in, keyword or positional alike)
as JSON with sorted keys; `self` and `cls` are left out, so instances sharing a cache share
entries. Arguments must be JSON-like (plus tuples, sets, bytes, dataclasses, datetimes, UUIDs,
enums and pydantic models). Otherwise, or for keys you want to read, pass `key`: a template
formatted with the arguments (`key="forecast:{city}:{days}"`) or a function taking the same
arguments and returning the key. Concurrent calls with the same key run the function once
(see `Cache.get_or_set`); exceptions are not cached.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, overload

import orjson

from nexus.plugins.cache.protocol import Cache, check_ttl

P = ParamSpec("P")
R = TypeVar("R")

_UNBOUND: Any = object()
_SELF_NAMES = frozenset({"self", "cls"})
_KEY_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _key_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        items = sorted(orjson.dumps(v, default=_key_default, option=_KEY_OPTIONS) for v in value)
        return {"__set__": [item.decode() for item in items]}
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": bytes(value).hex()}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON-like")


class _Spec:
    """What a cached function needs on every call, worked out once when it is decorated."""

    __slots__ = ("func", "key", "name", "pass_first", "signature", "skip_first", "source", "ttl")

    def __init__(
        self,
        func: Callable[..., Awaitable[Any]],
        source: Cache | Callable[..., Cache],
        ttl: float | None,
        key: str | Callable[..., str] | None,
    ) -> None:
        self.func, self.ttl, self.key = func, ttl, key
        self.name = f"{func.__module__}.{func.__qualname__}"
        self.signature = inspect.signature(func)
        parameters = list(self.signature.parameters.values())
        self.skip_first = bool(parameters) and parameters[0].name in _SELF_NAMES
        if hasattr(source, "get_or_set"):
            self.source: Callable[..., Cache] = lambda *_: source  # type: ignore[assignment]
            self.pass_first = False
        elif callable(source):
            self.source = source
            self.pass_first = _takes_an_argument(source)
        else:
            raise TypeError(
                f"cached({func.__qualname__}) needs a Cache or a function returning one, "
                f"got {source!r}."
            )

    def cache_for(self, args: tuple[Any, ...]) -> Cache:
        if not self.pass_first:
            return self.source()
        if not args:
            raise TypeError(
                f"{self.name}: the cache getter takes the first argument (self), but the "
                f"function was called without positional arguments."
            )
        return self.source(args[0])

    def key_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if callable(self.key):
            key = self.key(*args, **kwargs)
            if not isinstance(key, str):
                raise TypeError(f"{self.name}: the key function returned {key!r}, not a str.")
            return key
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if isinstance(self.key, str):
            return self.key.format(**bound.arguments)
        arguments = dict(bound.arguments)
        if self.skip_first:
            arguments.pop(next(iter(self.signature.parameters)))
        try:
            data = orjson.dumps(arguments, default=_key_default, option=_KEY_OPTIONS)
        except TypeError:
            raise TypeError(self._unkeyable(arguments)) from None
        return f"{self.name}:{hashlib.sha256(data).hexdigest()[:32]}"

    def _unkeyable(self, arguments: dict[str, Any]) -> str:
        culprit = next((n for n, v in arguments.items() if not _is_keyable(v)), "?")
        kind = type(arguments.get(culprit)).__name__
        return (
            f"cached({self.name}): argument {culprit!r} ({kind}) cannot be part of a cache key. "
            f"Pass key=... to build the key: a template such as 'item:{{item_id}}' or a "
            f"function taking the same arguments."
        )


def _is_keyable(value: Any) -> bool:
    try:
        orjson.dumps(value, default=_key_default, option=_KEY_OPTIONS)
    except TypeError:
        return False
    return True


def _takes_an_argument(getter: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(getter).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(
        p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters
    )


class CachedFunction(Generic[P, R]):
    """An async function whose results are kept in a cache; see `cached`."""

    def __init__(self, spec: _Spec, instance: Any = _UNBOUND) -> None:
        self._spec, self._instance = spec, instance
        functools.update_wrapper(self, spec.func)

    def __repr__(self) -> str:
        return f"<cached {self._spec.name}>"

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> CachedFunction[P, R]: ...
    @overload
    def __get__(
        self, instance: object, owner: type[Any] | None = None
    ) -> CachedFunction[..., R]: ...
    def __get__(self, instance: object, owner: type[Any] | None = None) -> CachedFunction[..., R]:
        """Bind to an instance, as functions do, so `obj.method(...)` passes `obj` on."""
        if instance is None:
            return self
        bound: CachedFunction[..., R] = object.__new__(CachedFunction)
        bound.__dict__.update(self.__dict__)  # the wrapped function's name, docs and spec
        bound._instance = instance
        return bound

    def _arguments(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return args if self._instance is _UNBOUND else (self._instance, *args)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        """The cached result for these arguments, computing and storing it on a miss."""
        return self._call(self._arguments(args), kwargs)

    async def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        spec = self._spec
        cache = spec.cache_for(args)
        key = spec.key_for(args, kwargs)
        result: R = await cache.get_or_set(key, lambda: spec.func(*args, **kwargs), ttl=spec.ttl)
        return result

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key the call with these arguments is cached under."""
        return self._spec.key_for(self._arguments(args), kwargs)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of the call with these arguments; whether there was one."""
        full = self._arguments(args)
        return await self._spec.cache_for(full).delete(self._spec.key_for(full, kwargs))


def cached(
    cache: Cache | Callable[..., Cache],
    *,
    ttl: float | None = None,
    key: str | Callable[..., str] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
    """Cache an async function's results in `cache` (a Cache, or a getter returning one).

    Args:
        ttl: seconds to keep each result; None uses the cache's default TTL.
        key: a template formatted with the arguments, or a function of them returning the
            key; by default a hash of the arguments (see the module documentation).
    """
    check_ttl(ttl)

    def decorate(func: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(
                f"cached decorates async functions; {getattr(func, '__qualname__', func)!r} "
                f"is not one."
            )
        return CachedFunction(_Spec(func, cache, ttl, key))

    return decorate
