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


def registry_frame(registry: dict):
    """A registry (``wearables.METRICS``, ``exposure.METRICS``) as a table: metric, name, units,
    reference and the ``table.column`` the refresh stores it in."""
    import pandas as pd

    return pd.DataFrame([{"metric": m.identifier, "name": m.long_name, "units": m.units, "reference": m.reference,
                          "stored in": f"{m.table}.{m.column}"} for m in registry.values()])
