"""Privacy and governance: the one gate every output passes on its way to a public-health user,
an export or a served page: roles checked where data is read, disclosure control of every public
count, and the tamper-evident audit log."""

from explorer.privacy.audit import AuditCheck, AuditLog, entry_hash
from explorer.privacy.disclosure import PROFILES, DisclosureControl, Profile, Release
from explorer.privacy.release import count_groupings, dp_person_counts, protected_person_counts
from explorer.privacy.roles import (ACCESS, ROLES, PermissionDenied, Principal, allows, check_role, readable_tables,
                                   require, require_tables)

__all__ = ["ACCESS", "PROFILES", "ROLES", "AuditCheck", "AuditLog", "DisclosureControl", "PermissionDenied", "Principal",
           "Profile", "Release", "allows", "check_role", "count_groupings", "dp_person_counts", "entry_hash",
           "protected_person_counts", "readable_tables", "require", "require_tables"]
