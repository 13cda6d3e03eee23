"""The metric registry: every metric the suite computes, declared once.

xclim's two layers: a pure function that computes a metric (``explorer.wearables.circadian``,
``explorer.exposure.climate``...) and a registry entry, declared here, that adds what a user or a
view needs to know: identifier, long name, the table and column the refresh stores it in, the
function and the reference, and (for public views) its fixed histogram bins. Units are not
restated: they are read from the catalog entry of the column that holds the metric, so a metric and
its column cannot disagree.

Cohort criteria (``Wearable``, ``Exposure``), the views, the command line and the refresh steps all
read :data:`METRICS`. The suite's own metrics are declared by ``explorer.wearables.registry`` and
``explorer.exposure.registry``, found, like a site package's, through the entry-point group
``explorer.metrics``::

    [project.entry-points."explorer.metrics"]
    my_site = "my_site.metrics"            # a module that calls METRICS.register(...), or
    my_metric = "my_site.metrics:MY_METRIC" # a Metric (or a list of them)

Examples
--------
>>> from explorer.catalog.metrics import METRICS
>>> METRICS["resting_hr"].units
'/min'
>>> METRICS["sleep_efficency"]
Traceback (most recent call last):
...
explorer.errors.CatalogError: no metric 'sleep_efficency' (did you mean 'sleep_efficiency'?); ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points

from explorer.catalog.entries import Catalog, default_catalog, with_unit
from explorer.catalog.units import unit_label
from explorer.errors import CatalogError, did_you_mean

#: entry-point group through which packages declare metrics
ENTRY_POINT_GROUP = "explorer.metrics"

#: the suite's own entry points (declared in its pyproject.toml like a plugin's): their absence
#: means the installed metadata is older than the code
_OWN_ENTRY_POINTS = ("wearables", "exposure")



@dataclass(frozen=True)
class Metric:
    """A registry entry (xclim style).

    Parameters
    ----------
    identifier : str
        Name users type (``steps``, ``tas_anomaly``); unique across domains.
    long_name : str
        What the metric is, in words, for titles and listings.
    table, column : str
        Where the refresh stores it; the catalog entry of ``table`` declares the column's unit.
    function : callable
        The pure function (or SQL builder) that defines the metric.
    reference : str
        The published definition followed.
    domain : str
        Family the metric belongs to (``wearables``, ``exposure``, or a site's own).
    bins : tuple of float, optional
        Fixed histogram edges for public views: no bin edge is ever a person's value.
    criterion : bool
        Whether a cohort criterion may bound it: its table holds one value per person and time
        (not per event and window, say).
    """

    identifier: str
    long_name: str
    table: str
    column: str
    function: object
    reference: str
    domain: str
    bins: tuple[float, ...] | None = None
    criterion: bool = True

    @property
    def units(self) -> str:
        """UCUM units of the metric: the unit its column declares in the default catalog."""
        return self.units_in(default_catalog())

    def units_in(self, catalog: Catalog) -> str:
        """UCUM units the column holding the metric declares in ``catalog`` (``"1"`` when the
        column is dimensionless or a flag)."""
        entry = catalog.get(self.table)
        if entry is None:
            raise CatalogError(f"metric {self.identifier!r} is stored in table {self.table!r}, which has no catalog entry; "
                               "add data_catalog/" + f"{self.table}.yaml (or the site package's catalog folder)")
        if self.column not in entry.column_names:
            raise CatalogError(f"metric {self.identifier!r}: catalog entry {self.table!r} has no column {self.column!r}"
                               f"{did_you_mean(self.column, entry.column_names)}")
        return entry.column(self.column).unit or "1"

    @property
    def unit_label(self) -> str:
        """Units as a person reads them (``°C``, ``steps``); empty when dimensionless."""
        return unit_label(self.units)

    @property
    def label(self) -> str:
        """Long name with units in parentheses, for an axis or a column header."""
        return with_unit(self.long_name, self.unit_label)


class MetricRegistry(Mapping):
    """Metrics by identifier, loaded on first use from the suite's modules and the
    ``explorer.metrics`` entry points. Unknown names fail with "did you mean"."""

    def __init__(self):
        self._metrics: dict[str, Metric] = {}
        self._loaded = False
        self._loading = threading.RLock()

    # ---------------------------------------------------------------- declaring
    def register(self, *metrics: Metric) -> None:
        """Declare metrics; a second declaration of the same identifier must be identical."""
        for metric in metrics:
            if not isinstance(metric, Metric):
                raise CatalogError(f"metric registry: expected a Metric, got {type(metric).__name__} {metric!r}")
            known = self._metrics.get(metric.identifier)
            if known is not None and known != metric:
                raise CatalogError(f"metric {metric.identifier!r} is declared twice, differently ({known.domain} and "
                                   f"{metric.domain}); rename one")
            self._metrics[metric.identifier] = metric

    def unregister(self, identifier: str) -> None:
        """Forget a metric (tests that declared one)."""
        self._metrics.pop(identifier, None)

    def load(self) -> None:
        """Load every ``explorer.metrics`` entry point (the suite's own and site plugins'), once."""
        with self._loading:
            if self._loaded:
                return
            self._loaded = True  # first: a module being imported reads the registry while it registers
            declared = entry_points(group=ENTRY_POINT_GROUP)
            missing = set(_OWN_ENTRY_POINTS) - {point.name for point in declared}
            if missing:
                self._loaded = False
                raise CatalogError(f"the {ENTRY_POINT_GROUP!r} entry points of cohort-explorer are missing "
                                   f"({', '.join(sorted(missing))}): its installed metadata is older than the code; "
                                   "reinstall it (`pip install -e .` in a checkout)")
            for point in declared:
                try:
                    declared = point.load()
                except Exception as exc:
                    raise CatalogError(f"entry point {point.name} = {point.value!r} (group {ENTRY_POINT_GROUP}) "
                                       f"cannot be loaded: {exc}") from exc
                if isinstance(declared, Metric):
                    self.register(declared)
                elif isinstance(declared, Iterable) and not isinstance(declared, (str, bytes)) \
                        and not hasattr(declared, "__file__"):
                    self.register(*declared)

    def reload(self) -> None:
        """Load again, e.g. after a plugin was installed into the running process."""
        with self._loading:
            self._loaded = False
        self.load()

    # ---------------------------------------------------------------- reading
    def __getitem__(self, identifier: str) -> Metric:
        self.load()
        try:
            return self._metrics[identifier]
        except KeyError:
            raise CatalogError(f"no metric {identifier!r}{did_you_mean(str(identifier), list(self._metrics))}; "
                               "`explorer wearables metrics` and `explorer exposure metrics` list them") from None

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._metrics))

    def __len__(self) -> int:
        self.load()
        return len(self._metrics)

    def __contains__(self, identifier: object) -> bool:
        self.load()
        return identifier in self._metrics

    def select(self, *, domain: str | None = None, table: str | Iterable[str] | None = None) -> dict[str, Metric]:
        """Metrics of one domain and/or stored in the given table(s), in declaration order."""
        self.load()
        tables = {table} if isinstance(table, str) else set(table) if table is not None else None
        return {name: m for name, m in self._metrics.items()
                if (domain is None or m.domain == domain) and (tables is None or m.table in tables)}


    def domain(self, domain: str) -> DomainMetrics:
        """A live view of one domain's metrics (``explorer.wearables.METRICS``): metrics a plugin
        declares later show up in it too."""
        return DomainMetrics(self, domain)


class DomainMetrics(Mapping):
    """The metrics of one domain, read through from the registry on every access."""

    def __init__(self, registry: MetricRegistry, domain: str):
        self._registry, self.name = registry, domain

    def _current(self) -> dict[str, Metric]:
        return self._registry.select(domain=self.name)

    def __getitem__(self, identifier: str) -> Metric:
        current = self._current()
        if identifier not in current:
            raise CatalogError(f"no {self.name} metric {identifier!r}{did_you_mean(str(identifier), list(current))}; "
                               f"`explorer {self.name} metrics` lists them")
        return current[identifier]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __repr__(self) -> str:
        return f"<{self.name} metrics: {', '.join(self._current())}>"


#: the one registry every consumer reads
METRICS = MetricRegistry()


def registry_frame(registry: Mapping[str, Metric]):
    """Metrics as a table: metric, name, units, reference and the ``table.column`` the refresh
    stores it in."""
    import pandas as pd

    return pd.DataFrame([{"metric": m.identifier, "name": m.long_name, "units": m.units, "reference": m.reference,
                          "stored in": f"{m.table}.{m.column}"} for m in registry.values()])
