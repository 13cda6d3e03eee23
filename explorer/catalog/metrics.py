"""The shape of a metric registry entry, shared by the analytics registries (wearables, exposure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A registry entry (xclim style): identifier, long name, units, defining function,
    reference, and where the refresh steps store it (``table.column``)."""

    identifier: str
    long_name: str
    units: str
    function: object
    reference: str
    table: str
    column: str
