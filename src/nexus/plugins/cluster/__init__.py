"""The cluster built-in plugin: enable, disable and reload plugins on every instance at once.

The desired state of plugins lives in Redis (`<prefix>:desired`); a change through the
CLUSTER service or `POST /api/cluster/plugins/{name}/enable|disable|reload` is announced to
every instance, which converges on it through the platform (and again on a periodic
reconciliation, so missed notices do not matter). Each instance reports what it runs in
`<prefix>:instance:<id>`, refreshed by heartbeats and gone once they stop:

    control = ctx.services.get(CLUSTER)          # manifest: "services:use:cluster"
    await control.set_enabled("reports", False)
    for instance in await control.instances():
        print(instance.id, instance.plugins["reports"].state)

Admins read `GET /api/cluster/instances` (permission `cluster:read`) and change plugins with
`plugins:manage`; each change publishes `admin.plugin.<operation>` for the audit log.
"""

from __future__ import annotations

from nexus.plugins.cluster.control import CLUSTER, ClusterControl, ProtectedPluginError
from nexus.plugins.cluster.converger import Converger, protected_plugins
from nexus.plugins.cluster.plugin import ClusterPlugin
from nexus.plugins.cluster.routes import MANAGE_PERMISSION, READ_PERMISSION
from nexus.plugins.cluster.settings import ClusterSettings
from nexus.plugins.cluster.state import DesiredPlugin, InstanceReport, PluginReport
from nexus.plugins.cluster.store import ClusterStore, ClusterUnavailableError

__all__ = [
    "CLUSTER",
    "MANAGE_PERMISSION",
    "READ_PERMISSION",
    "ClusterControl",
    "ClusterPlugin",
    "ClusterSettings",
    "ClusterStore",
    "ClusterUnavailableError",
    "Converger",
    "DesiredPlugin",
    "InstanceReport",
    "PluginReport",
    "ProtectedPluginError",
    "protected_plugins",
]
