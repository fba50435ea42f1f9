"""The admin built-in plugin: a web dashboard at /admin and its JSON API at /admin/api.

Admins (the admin role, or permission `admin:access`) sign in at /admin/login with their
auth username and password; the dashboard shows every plugin with its state and health (and
enables, disables or reloads them), the dependency graph, a live event stream, request and
event charts, dead letters, the redacted configuration, the audit log and, with a cluster
plugin, the instances. Scripts can use /admin/api with a bearer token or API key instead.

Every change made through it publishes `admin.<action>` (`admin.plugin.disable`,
`admin.login`, ...) naming the user, which the audit plugin records. Its manifest grants
`events:subscribe:**` because the live event view shows whatever the application publishes;
only signed-in admins see it.
"""

from __future__ import annotations

from nexus.plugins.admin import _extra  # noqa: F401 - names the extras if libraries are missing
from nexus.plugins.admin.access import ACCESS_PERMISSION, CSRF_HEADER
from nexus.plugins.admin.plugin import AdminPlugin
from nexus.plugins.admin.session import COOKIE
from nexus.plugins.admin.settings import AdminSettings

__all__ = ["ACCESS_PERMISSION", "COOKIE", "CSRF_HEADER", "AdminPlugin", "AdminSettings"]
