"""assert_unloads_cleanly: unload and reload a directory plugin, and prove nothing of it stays."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import inspect
import sys
import types
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from nexus.http.caches import forget_framework_caches
from nexus.kernel import loader
from nexus.kernel.kernel import Kernel
from nexus.kernel.lifecycle import PluginState

if TYPE_CHECKING:
    from nexus.http.app import NexusApp

_SEARCH_LIMIT: Final = 5000  # objects visited when looking for what holds a leaked one
_HOLDERS_SHOWN: Final = 3


async def assert_unloads_cleanly(target: Kernel | NexusApp, name: str, *, cycles: int = 3) -> None:
    """Unload and load directory plugin `name` `cycles` times; fail if any of it stays behind.

    After every unload, none of the plugin's event subscriptions, services, routes (when given
    the app), tasks or modules may remain, tasks it started outside `ctx.tasks` included; and,
    after a garbage collection, no instance, class, function or module of the unloaded copy
    may still be alive. The plugin ends loaded and active. Raises AssertionError listing what
    leaked and, for objects, the references that hold them.

    The test itself must not keep the plugin instance (`kernel.plugins.plugin(name)`) in a
    variable: that reference counts as a leak. FastAPI's, pydantic's and typing's memoization
    caches are cleared before looking, since they keep the endpoints and models they saw last
    (a bounded retention that is not the plugin's doing).
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    if cycles < 1:
        raise ValueError(f"cycles must be at least 1, got {cycles!r}.")
    kernel, dispatcher = _parts(target)
    package = f"{loader.PACKAGE}.{name}"
    directory = _check_plugin(kernel, name, package)
    copy = _Copy.of(kernel, name, package, "the copy loaded before the first unload")
    for cycle in range(1, cycles + 1):
        await kernel.plugins.unload(name)
        leftovers = await _leftovers(kernel, dispatcher, name, package, directory)
        if leftovers:
            listed = "".join(f"\n  - {item}" for item in leftovers)
            raise AssertionError(
                f"Plugin {name!r} left things behind when unloaded (unload {cycle} of "
                f"{cycles}):{listed}"
            )
        _clear_memoization_caches()
        gc.collect()
        retained = _retained(copy)
        if retained is not None:
            raise AssertionError(
                f"Plugin {name!r} is still in memory after being unloaded (unload {cycle} of "
                f"{cycles}, then gc.collect()): {retained}"
            )
        status = await kernel.plugins.load(name)
        if status.state is not PluginState.ACTIVE:
            raise AssertionError(
                f"Plugin {name!r} did not become active again after unload {cycle}: "
                f"{status.reason or status.state.value}"
            )
        copy = _Copy.of(kernel, name, package, f"the copy loaded in cycle {cycle}")


def _parts(target: Any) -> tuple[Kernel, Any]:
    if isinstance(target, Kernel):
        return target, None
    kernel = getattr(target, "kernel", None)
    if not isinstance(kernel, Kernel):
        raise TypeError(
            f"assert_unloads_cleanly takes a Kernel or an app with a `kernel` (create_test_app), "
            f"got {type(target).__name__}."
        )
    return kernel, getattr(target, "dispatcher", None)


def _check_plugin(kernel: Kernel, name: str, package: str) -> Path:
    status = kernel.plugins.status(name)
    if status.state is not PluginState.ACTIVE:
        raise AssertionError(
            f"Plugin {name!r} must be active before testing its unload; it is "
            f"{status.state.value}: {status.reason or 'see its status'}"
        )
    module = type(kernel.plugins.plugin(name)).__module__
    root = sys.modules.get(package)
    locations = getattr(root, "__path__", None)
    if not module.startswith(f"{package}.") or not locations:
        raise ValueError(
            f"assert_unloads_cleanly reloads plugins found in a plugin directory; {name!r} comes "
            f"from {status.origin}. Put it in a directory listed in plugin_paths."
        )
    return Path(next(iter(locations))).resolve()


@dataclass
class _Copy:
    """Weak references to one loaded copy of a plugin: instance, class, modules, their code."""

    label: str
    refs: list[tuple[str, weakref.ref[Any]]] = field(default_factory=list)

    @classmethod
    def of(cls, kernel: Kernel, name: str, package: str, label: str) -> _Copy:
        copy = cls(label)
        instance = kernel.plugins.plugin(name)
        plugin_class = type(instance)
        copy.add(f"the plugin instance ({plugin_class.__qualname__})", instance)
        copy.add(f"class {plugin_class.__module__}.{plugin_class.__qualname__}", plugin_class)
        del instance
        for module_name, module in sorted(_modules(package)):
            copy.add(f"module {module_name}", module)
            for value in list(vars(module).values()):
                if (isinstance(value, type) or inspect.isfunction(value)) and getattr(
                    value, "__module__", None
                ) == module_name:
                    kind = "class" if isinstance(value, type) else "function"
                    copy.add(f"{kind} {module_name}.{value.__qualname__}", value)
        return copy

    def add(self, description: str, obj: object) -> None:
        if any(ref() is obj for _, ref in self.refs):
            return
        # An object without weak reference support cannot be tracked.
        with contextlib.suppress(TypeError):
            self.refs.append((description, weakref.ref(obj)))


def _modules(package: str) -> list[tuple[str, types.ModuleType]]:
    prefix = f"{package}."
    return [
        (module_name, module)
        for module_name, module in list(sys.modules.items())
        if module_name == package or module_name.startswith(prefix)
    ]


async def _leftovers(
    kernel: Kernel, dispatcher: Any, name: str, package: str, directory: Path
) -> list[str]:
    found: list[str] = []
    if name in kernel.plugins:
        found.append(f"the kernel still lists it ({kernel.plugins.status(name).state.value})")
    found += [
        f"event subscription to {sub.pattern!r} (handler {sub.handler})"
        for sub in kernel.bus.subscriptions(owner=name)
    ]
    found += [
        f"service {info.key!r}" for info in kernel.services.entries() if info.provider == name
    ]
    if dispatcher is not None:
        if name in dispatcher.apps():
            found.append(f"routes served under /api/{name}")
        found += [
            f"routes served under /{root}"
            for root, owner in sorted(dispatcher.roots().items())
            if owner == name
        ]
    found += [f"module {module_name} in sys.modules" for module_name, _ in _modules(package)]
    found += [
        f"task {task.get_name()!r} {why}" for task, why in await _running_tasks(name, directory)
    ]
    return found


async def _running_tasks(name: str, directory: Path) -> list[tuple[asyncio.Task[Any], str]]:
    """Tasks of the plugin still running: named after it, or running its code."""
    me = asyncio.current_task()
    owned = [
        (task, why)
        for task in asyncio.all_tasks()
        if task is not me and (why := _ownership(task, name, directory)) is not None
    ]
    # Cancelled event-handler workers finish on their next turn of the loop: let them.
    cancelling = [task for task, _ in owned if task.cancelling()]
    if cancelling:
        await asyncio.wait(cancelling, timeout=1.0)
    return sorted(((task, why) for task, why in owned if not task.done()), key=lambda item: item[1])


def _ownership(task: asyncio.Task[Any], name: str, directory: Path) -> str | None:
    task_name = task.get_name()
    if task_name.startswith(f"{name}:"):
        return "(a ctx.tasks task) is still running"
    if task_name.startswith(f"nexus.events:{name}:"):
        return "(an event handler worker) is still running"
    for code in _awaited_code(task.get_coro()):
        path = Path(code.co_filename)
        if path.is_absolute() and path.resolve().is_relative_to(directory):
            return (
                f"is still running {code.co_qualname} ({path.name}:{code.co_firstlineno}); "
                f"start background work with ctx.tasks.spawn so it is cancelled on unload"
            )
    return None


def _awaited_code(awaitable: object) -> Iterator[types.CodeType]:
    """The code of a coroutine and of everything it is awaiting, outermost first."""
    seen = 0
    while awaitable is not None and seen < 100:
        code = getattr(awaitable, "cr_code", None) or getattr(awaitable, "gi_code", None)
        if isinstance(code, types.CodeType):
            yield code
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
        seen += 1


def _clear_memoization_caches() -> None:
    forget_framework_caches()


def _retained(copy: _Copy) -> str | None:
    """What of an unloaded copy is still alive, and what holds it; None if nothing is."""
    alive: list[str] = []
    primary: object = None
    for description, ref in copy.refs:
        obj = ref()
        if obj is not None:
            alive.append(description)
            if primary is None:
                primary = obj
        obj = None
    if primary is None:
        return None
    shown = ", ".join(alive[:3]) + (f" and {len(alive) - 3} more" if len(alive) > 3 else "")
    holders = _holders(primary, alive[0])
    primary = None
    held = "".join(f"\n  - held by {holder}" for holder in holders) or (
        "\n  - held by references the search could not name (see gc.get_referrers)"
    )
    return f"{copy.label} keeps {shown} alive{held}"


def _holders(target: object, description: str) -> list[str]:
    """Reference paths from a root (a module global, a running coroutine) down to `target`.

    One path per object that refers to `target` directly: roots that reach it the same way
    add nothing.
    """
    modules = {id(vars(m)): n for n, m in list(sys.modules.items()) if hasattr(m, "__dict__")}
    # id -> (id of the object it refers to, how, id of the direct referrer of target it is via)
    steps: dict[int, tuple[int, str, int]] = {id(target): (0, description, 0)}
    queue = collections.deque([target])
    # Everything visited stays referenced until the end, so that no id is reused meanwhile;
    # the containers made here refer to what they hold and are skipped as referrers.
    kept: list[object] = []
    mine = {id(queue), id(kept)}
    found: dict[int, str] = {}
    while queue and len(steps) < _SEARCH_LIMIT and len(found) < _HOLDERS_SHOWN:
        obj = queue.popleft()
        referrers = gc.get_referrers(obj)
        kept.append(referrers)
        mine.add(id(referrers))
        for referrer in referrers:
            if id(referrer) in mine or id(referrer) in steps or _is_own_frame(referrer):
                continue
            branch = steps[id(obj)][2] or id(referrer)
            root = _root(referrer, obj, modules)
            if root is not None:
                found.setdefault(branch, f"{root} -> {_path(steps, id(obj))}")
                continue
            if branch in found:
                continue
            steps[id(referrer)] = (id(obj), _edge(referrer, obj), branch)
            kept.append(referrer)
            queue.append(referrer)
    queue.clear()
    kept.clear()
    return list(found.values())[:_HOLDERS_SHOWN]


def _path(steps: dict[int, tuple[int, str, int]], start: int) -> str:
    labels: list[str] = []
    current = start
    while True:
        child, label, _ = steps[current]
        labels.append(label)
        if child == 0:
            return " -> ".join(labels)
        current = child


def _is_own_frame(obj: object) -> bool:
    code = None
    if isinstance(obj, types.FrameType):
        code = obj.f_code
    elif isinstance(obj, types.CoroutineType):
        code = obj.cr_code
    return code is not None and code.co_filename == __file__


def _root(referrer: object, obj: object, modules: dict[int, str]) -> str | None:
    """A description if `referrer` is where a reference path starts, else None."""
    if isinstance(referrer, dict) and id(referrer) in modules:
        key = _key_of(referrer, obj)
        return f"global {key} of module {modules[id(referrer)]!r}"
    if isinstance(referrer, types.CoroutineType):
        code = referrer.cr_code
        local = _key_of(referrer.cr_frame.f_locals, obj) if referrer.cr_frame else None
        where = f"{code.co_qualname} ({Path(code.co_filename).name}:{code.co_firstlineno})"
        return f"local {local or '?'} of the running coroutine {where}"
    if isinstance(referrer, types.FrameType):
        code = referrer.f_code
        local = _key_of(referrer.f_locals, obj)
        return f"local {local or '?'} of the running function {code.co_qualname}"
    return None


def _edge(referrer: object, obj: object) -> str:
    """How `referrer` holds `obj`, as a short label."""
    if isinstance(referrer, dict):
        if "__builtins__" in referrer and "__name__" in referrer:
            return f"global {_key_of(referrer, obj)} of unloaded module {referrer['__name__']!r}"
        return f"dict[{_key_of(referrer, obj)}]"
    if isinstance(referrer, list | tuple):
        kind = type(referrer).__name__
        index = next((i for i, item in enumerate(referrer) if item is obj), None)
        return f"{kind}[{index}]" if index is not None else kind
    if isinstance(referrer, types.CellType):
        return "closure cell"
    if isinstance(referrer, types.FunctionType):
        return f"function {referrer.__qualname__}"
    if isinstance(referrer, types.MethodType):
        return f"bound method {referrer.__func__.__qualname__}"
    if isinstance(referrer, type):
        return f"class {referrer.__qualname__}"
    attributes = getattr(referrer, "__dict__", None)
    key = _key_of(attributes, obj) if isinstance(attributes, dict) else None
    if key is not None:
        return f"attribute {key} of a {type(referrer).__qualname__} object"
    return f"a {type(referrer).__qualname__}"


def _key_of(mapping: Any, obj: object) -> str | None:
    for key, value in list(mapping.items()):
        if value is obj:
            return repr(key)
    return None
