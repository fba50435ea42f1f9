"""The audit built-in plugin: who did what, when, with what outcome, in which request.

It records every `auth.**`, `security.**`, `nexus.plugin.*` and `admin.**` event, and whatever
plugins record through the `AUDIT` service (`services:use:audit`):

    await ctx.services.get(AUDIT).record(action="notes.note.deleted", resource=f"note:{id}")

Admins read it at `GET /api/audit/entries` (permission `audit:read`).
"""

from __future__ import annotations

from nexus.plugins.audit.entries import AuditEntry, Outcome
from nexus.plugins.audit.log import AUDIT, AuditLog
from nexus.plugins.audit.plugin import AUDITED_EVENTS, AuditPlugin, AuditSettings
from nexus.plugins.audit.routes import READ_PERMISSION

__all__ = [
    "AUDIT",
    "AUDITED_EVENTS",
    "READ_PERMISSION",
    "AuditEntry",
    "AuditLog",
    "AuditPlugin",
    "AuditSettings",
    "Outcome",
]
