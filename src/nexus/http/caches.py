"""Forgetting what the web framework memoised about a plugin's code once it is unloaded.

FastAPI, Starlette and pydantic keep bounded caches (functools.lru_cache, typing's caches of
subscripted generics such as `Annotated[...]`) keyed by the endpoints and models they analysed.
After a reload those entries keep the old copy of a plugin's modules alive until evicted: with
thousands of reloads that is a copy per reload. Clearing them when a plugin's routes go away
lets the old copy be collected; the next request re-analyses what it needs.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable
from typing import Final

#: Libraries whose memoisation caches keep the endpoints and models they last saw.
MEMOISING_LIBRARIES: Final = frozenset({"fastapi", "pydantic", "starlette"})


def forget_framework_caches() -> None:
    """Clear the memoisation caches of FastAPI, Starlette, pydantic and `typing`."""
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name.partition(".")[0] not in MEMOISING_LIBRARIES:
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear) and hasattr(value, "cache_info"):  # a functools.lru_cache
                clear()
    cleanups: list[Callable[[], None]] = getattr(typing, "_cleanups", [])
    for cleanup in cleanups:
        cleanup()
