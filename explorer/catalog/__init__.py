"""The data catalog: *what* each dataset is, kept apart from *how* it is read (intake's rule).

One YAML file per dataset under ``data_catalog/`` declares its name, description, kind (table or
array), schema with units, owner, sensitivity tier, and entity and time columns. Entries are
validated against :data:`ENTRY_SCHEMA`; a wrong entry fails with the file, the key and what was
expected.
"""

from explorer.catalog.entries import (
    COLUMN_TYPES,
    ENTRY_SCHEMA,
    Catalog,
    Column,
    Entry,
    default_catalog,
    default_catalog_dir,
    load_entry,
)

__all__ = [
    "COLUMN_TYPES",
    "ENTRY_SCHEMA",
    "Catalog",
    "Column",
    "Entry",
    "default_catalog",
    "default_catalog_dir",
    "load_entry",
]
