"""The public API is pinned: changing it must be a deliberate act."""

from __future__ import annotations

import subprocess
import sys

import nexus


def test_root_exports_are_pinned() -> None:
    """`nexus.__all__` is sorted and exactly the names plugin authors rely on."""
    assert nexus.__all__ == sorted(nexus.__all__)
    assert nexus.__all__ == [
        "ConfigError",
        "DependencyCycleError",
        "DuplicatePluginError",
        "Event",
        "EventError",
        "EventQueueFullError",
        "Health",
        "Kernel",
        "Manifest",
        "ManifestError",
        "NexusError",
        "PermissionDeniedError",
        "Plugin",
        "PluginContext",
        "PluginImportError",
        "PluginNotFoundError",
        "PluginState",
        "PluginStateError",
        "ServiceConflictError",
        "ServiceKey",
        "ServiceNotFoundError",
        "StartupError",
        "TransportError",
        "__version__",
    ]
    for name in nexus.__all__:
        assert hasattr(nexus, name), name


def test_errors_refine_builtins() -> None:
    """Nexus errors can be caught as the builtin errors they refine."""
    assert issubclass(nexus.ServiceNotFoundError, LookupError)
    assert issubclass(nexus.PermissionDeniedError, PermissionError)
    assert issubclass(nexus.ManifestError, ValueError)
    assert issubclass(nexus.ConfigError, ValueError)


def test_kernel_imports_no_web_framework() -> None:
    """Importing nexus and nexus.kernel loads neither FastAPI nor Starlette."""
    code = (
        "import sys, nexus, nexus.kernel; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
