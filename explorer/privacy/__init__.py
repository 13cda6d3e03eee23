"""Privacy and governance: the one gate every output passes on its way to a public-health user,
an export or a served page. Today: the tamper-evident audit log (``AuditLog``)."""

from explorer.privacy.audit import AuditCheck, AuditLog, entry_hash

__all__ = ["AuditCheck", "AuditLog", "entry_hash"]
