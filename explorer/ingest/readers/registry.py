"""The reader registry: every reader, built in or from a site plugin, by its format name.

Format detection (which readers sniff a file, in which order), reading a file with the reader
chosen for it (in the ingesting process or a worker) and any listing of readers all read
:data:`READERS`; no other list of readers exists. Looking up an unknown name fails with the
closest name ("did you mean").

Adding a reader from a site package
-----------------------------------
Declare it in the ``explorer.readers`` entry-point group of the package's ``pyproject.toml``::

    [project.entry-points."explorer.readers"]
    my_lab_xml = "my_site.readers:MyLabXmlReader"

and install the package where the ingest runs (``pip install -e .``). The name on the left is
the reader's ``format``; the value names a :class:`~explorer.ingest.readers.Reader` subclass, or
an object with the same interface (``format``, ``order``, ``description``, ``sniff(path, head)``,
``read(path, context)``)::

    from explorer.ingest.readers import Reader, ReaderError, ReadResult

    class MyLabXmlReader(Reader):
        format = "my_lab_xml"
        order = 35                      # tried after the built-in lab CSV readers (30, 31)
        description = "lab results as <labs> XML"

        def sniff(self, path, head):
            return None if head.lstrip().startswith(b"<labs") else "not <labs> XML"

        def read(self, path, context):
            rows = ...                  # a DataFrame with _row and the columns of `measurement`
            return ReadResult(rows_read=len(rows), tables={"measurement": rows})

The rows it returns pass the same catalog checks, staging and commit as a built-in reader's.
Entry points are loaded once, when the registry is first used; a plugin that cannot be loaded,
or whose object is not a reader, stops the ingest with a message naming the entry point.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points

from explorer.errors import ExplorerError, did_you_mean
from explorer.ingest.readers import agencies, csv_tables, fhir, fitbit_json, grids, parquet
from explorer.ingest.readers import apple_health, garmin_fit
from explorer.ingest.readers.base import Reader

#: entry-point group through which site packages add readers
ENTRY_POINT_GROUP = "explorer.readers"

#: the suite's own readers (README, "Ingest", lists what each reads)
BUILT_IN_READERS: tuple[type[Reader], ...] = (
    csv_tables.LabColumnMapReader,
    fhir.FhirNdjsonPatientReader,
    csv_tables.ResidenceReader,
    csv_tables.AouHeartRateReader,
    csv_tables.AouStepsReader,
    csv_tables.AouSleepLevelReader,
    csv_tables.AouActivitySummaryReader,
    csv_tables.AouSleepSummaryReader,
    csv_tables.AouHeartRateSummaryReader,
    fitbit_json.FitbitExportReader,
    apple_health.AppleHealthXmlReader,
    apple_health.AppleHealthCompanionReader,
    garmin_fit.GarminFitReader,
    csv_tables.LabLongCsvReader,
    csv_tables.LabWideCsvReader,
    fhir.FhirBundleReader,
    fhir.FhirNdjsonReader,
    csv_tables.AreaIndexReader,
    parquet.ParquetTableReader,
    csv_tables.WeatherStationCsvReader,
    grids.NetcdfGridReader,
    grids.ZarrGridReader,
    agencies.GhcnStationsReader,
    agencies.AqsDailyReader,
    agencies.GhcnDailyByStationReader,
    agencies.NoaaDailySummariesReader,
    agencies.SviReader,
    agencies.AdiReader,
)

FORMAT_NAME = re.compile(r"[a-z][a-z0-9_]*")


class UnknownReaderError(ExplorerError, LookupError):
    """A reader name that no built-in reader or plugin has."""


class ReaderPluginError(ExplorerError):
    """An ``explorer.readers`` entry point that cannot be loaded or is not a reader."""


class ReaderRegistry(Mapping[str, Reader]):
    """Readers by format name, in detection order: the built-in ones and the site plugins.

    Parameters
    ----------
    built_in : iterable of Reader subclasses
        The suite's own readers.
    group : str
        The entry-point group whose entry points add readers.

    Examples
    --------
    >>> READERS["residence_history_csv"].order
    10
    >>> READERS["residence_csv"]
    Traceback (most recent call last):
    ...
    explorer.ingest.readers.registry.UnknownReaderError: no reader named 'residence_csv' (did you mean ...
    """

    def __init__(self, built_in: Iterable[type[Reader]], group: str = ENTRY_POINT_GROUP):
        self._built_in = tuple(built_in)
        self._group = group
        self._readers: dict[str, Reader] | None = None  # None until first used
        self._loading = threading.RLock()

    def _loaded(self) -> dict[str, Reader]:
        """The readers, loading the built-in ones and the plugins on first use."""
        with self._loading:
            if self._readers is None:
                found: dict[str, tuple[Reader, str]] = {}
                for cls in self._built_in:
                    self._add(found, cls(), f"built-in {cls.__module__}.{cls.__qualname__}")
                for point in entry_points(group=self._group):
                    self._add(found, _plugin_reader(point), _describe(point))
                ordered = sorted(found.values(), key=lambda item: (item[0].order, item[0].format))
                # kept only once every plugin loaded: a broken one fails again on the next use
                self._readers = {reader.format: reader for reader, _origin in ordered}
            return self._readers

    @staticmethod
    def _add(found: dict[str, tuple[Reader, str]], reader: Reader, origin: str) -> None:
        if reader.format in found:
            raise ReaderPluginError(f"reader format {reader.format!r} is declared twice: by {found[reader.format][1]} "
                                    f"and by {origin}; a format has one reader, rename one of them")
        found[reader.format] = (reader, origin)

    def reset(self) -> None:
        """Forget the loaded readers; the next use loads the built-in ones and the plugins again
        (after a plugin was installed into the running process, or in tests)."""
        with self._loading:
            self._readers = None

    def in_order(self) -> list[Reader]:
        """Every reader in detection order: by ``order``, then by name."""
        return list(self._loaded().values())

    def __getitem__(self, name: str) -> Reader:
        readers = self._loaded()
        try:
            return readers[name]
        except KeyError:
            raise UnknownReaderError(f"no reader named {name!r}{did_you_mean(str(name), readers)}; "
                                     f"readers: {', '.join(sorted(readers))}") from None

    def get(self, name: str, default: Reader | None = None) -> Reader | None:
        return self._loaded().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._loaded()))

    def __len__(self) -> int:
        return len(self._loaded())


def _describe(point: EntryPoint) -> str:
    package = f" of package {point.dist.name}" if getattr(point, "dist", None) is not None else ""
    return f"entry point {point.name} = {point.value!r} (group {point.group}){package}"


def _plugin_reader(point: EntryPoint) -> Reader:
    """The reader an entry point names: its class instantiated, or the object itself."""
    where = _describe(point)
    try:
        loaded = point.load()
    except Exception as exc:  # whatever a plugin raises on import, the message must name it
        raise ReaderPluginError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}; fix or uninstall "
                                "the package that declares it") from exc
    try:
        reader = loaded() if isinstance(loaded, type) else loaded
    except Exception as exc:
        raise ReaderPluginError(f"{where}: {loaded!r} cannot be created without arguments: "
                                f"{type(exc).__name__}: {exc}") from exc
    missing = [name for name in ("sniff", "read") if not callable(getattr(reader, name, None))]
    if missing:
        raise ReaderPluginError(f"{where}: {loaded!r} is not a reader: no {' or '.join(missing)} method "
                                "(subclass explorer.ingest.readers.Reader)")
    fmt, order = getattr(reader, "format", None), getattr(reader, "order", None)
    if not isinstance(fmt, str) or not FORMAT_NAME.fullmatch(fmt):
        raise ReaderPluginError(f"{where}: format {fmt!r}; expected a lower_snake_case name")
    if fmt != point.name:
        raise ReaderPluginError(f"{where}: the reader's format is {fmt!r}; name the entry point after it "
                                f"({fmt} = {point.value!r}) so that a reader has one name")
    if not isinstance(order, int) or isinstance(order, bool):
        raise ReaderPluginError(f"{where}: order {order!r}; expected an integer (readers are tried from the lowest)")
    return reader


#: the one registry every consumer reads
READERS = ReaderRegistry(BUILT_IN_READERS)


def readers_in_order() -> list[Reader]:
    """Every reader, built in or plugin, in detection order; see :meth:`ReaderRegistry.in_order`."""
    return READERS.in_order()


def reader(name: str) -> Reader:
    """The reader of format ``name``.

    Raises
    ------
    UnknownReaderError
        When no reader has that name; the message suggests the closest one.
    """
    return READERS[name]


def reset_readers() -> None:
    """Forget loaded plugins, so that the next use looks for entry points again (tests)."""
    READERS.reset()
