"""Catalog entries: load, validate and look up the declarative description of every dataset."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import fastjsonschema
import pyarrow as pa
import yaml

from explorer.errors import CatalogError, did_you_mean

#: Column types an entry may declare, and the Arrow type a table column is stored as.
#: ``timestamp`` is local wall-clock time without zone (how Fitbit and most EHR extracts write it);
#: ``timestamp_tz`` is an instant in UTC; ``binary`` holds bytes (a bitmap of a day's minutes).
COLUMN_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamp_tz": pa.timestamp("us", tz="UTC"),
    "binary": pa.binary(),
}

SENSITIVITY_TIERS = ("public", "researcher", "steward")

#: Row checks a column may declare; ingest quarantines a row that fails one, with the reason.
_COLUMN_CHECKS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                  "description": "[min, max], inclusive, in the column's unit: a value outside is quarantined"},
        "range_unit": {"type": "string",
                       "description": "the unit as a quarantine reason writes it (bpm), where the UCUM code reads poorly"},
        "not_in_future": {"type": "boolean",
                          "description": "a time more than a day after the ingest is quarantined"},
    },
}

#: Row checks that span columns, declared on the entry.
_ENTRY_CHECKS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "unique_local_minute": {
            "type": "object",
            "additionalProperties": False,
            "required": ["value"],
            "description": "one row per entity and local minute (the time column) in the time zone where the "
                           "person lived that day: a repeat is quarantined (one is allowed in the repeated hour "
                           "of an autumn clock change), as is a minute in the hour skipped in spring; each local "
                           "day's zone is recorded in wearable_day_zone",
            "properties": {"value": {"type": "string",
                                     "description": "column compared to tell an exact duplicate from a conflicting one"}},
        },
    },
}

_COLUMN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "type"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        "type": {"enum": sorted(COLUMN_TYPES)},
        "unit": {"type": "string", "description": "UCUM unit, or 'count', '1' for dimensionless"},
        "description": {"type": "string"},
        "label": {"type": "string", "minLength": 1,
                  "description": "what a table header or an axis calls the column (default: its name in words)"},
        "nullable": {"type": "boolean"},
        "dims": {"type": "array", "items": {"type": "string"}},
        "values": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                   "description": "the vocabulary of an enumerated column: cohort definitions are checked against it"},
        "checks": _COLUMN_CHECKS,
    },
}

#: JSON Schema every ``data_catalog/*.yaml`` entry must satisfy.
ENTRY_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "description", "kind", "owner", "sensitivity", "schema"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        "description": {"type": "string", "minLength": 10},
        "kind": {"enum": ["table", "array"]},
        "owner": {"type": "string", "minLength": 1},
        "sensitivity": {"enum": list(SENSITIVITY_TIERS)},
        "entity": {"type": "string", "description": "column that identifies the unit of analysis"},
        "time": {"type": "string", "description": "column that places a row in time"},
        "layer": {"enum": ["raw", "unified", "aggregate", "array", "cohort"]},
        "primary_key": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "schema": {"type": "array", "items": _COLUMN, "minItems": 1},
        "references": {"type": "array", "items": {"type": "string"}},
        "checks": _ENTRY_CHECKS,
    },
}


@dataclass(frozen=True)
class ColumnChecks:
    """Row checks declared on a column (the ``checks`` key of a column in a catalog entry).

    Attributes
    ----------
    range : tuple of float, optional
        ``(min, max)``, inclusive, in the column's unit; a value outside is quarantined.
    range_unit : str, optional
        The unit as a quarantine reason writes it ("bpm"); default the column's unit.
    not_in_future : bool
        A time more than a day after the ingest is quarantined.
    """

    range: tuple[float, float] | None = None
    range_unit: str | None = None
    not_in_future: bool = False


@dataclass(frozen=True)
class EntryChecks:
    """Row checks declared on a dataset that span its columns (the entry's ``checks`` key).

    Attributes
    ----------
    unique_local_minute : str, optional
        When set, one row per entity and local minute, in the time zone where the person lived
        that day (see :mod:`explorer.ingest.checks`); the value names the column compared to tell
        an exact duplicate from a conflicting one.
    """

    unique_local_minute: str | None = None


@dataclass(frozen=True)
class Column:
    """One column (table) or variable (array) of a dataset."""

    name: str
    type: str
    unit: str | None = None
    description: str = ""
    nullable: bool = True
    dims: tuple[str, ...] = ()
    checks: ColumnChecks = ColumnChecks()
    #: the vocabulary of an enumerated column (empty: any value); cohort definitions name values
    #: from it, so a misspelt one is refused instead of matching no one
    values: tuple[str, ...] = ()
    #: what a table header or an axis calls the column; empty: its name in words
    label: str = ""

    @property
    def arrow_type(self) -> pa.DataType:
        return COLUMN_TYPES[self.type]

    @property
    def header(self) -> str:
        """The column as a table header reads: its label (or name in words) and its unit,
        ``"rows written"``, ``"duration (s)"``, ``"median days per person (days)"`` unless
        the label already says it."""
        from explorer.catalog.units import unit_label

        return with_unit(self.label or self.name.replace("_", " "), unit_label(self.unit))


def with_unit(label: str, unit: str) -> str:
    """``label (unit)``, or ``label`` alone when there is no unit or the label already names it
    ("Daily steps", not "Daily steps (steps)").

    Examples
    --------
    >>> with_unit("duration", "s"), with_unit("daily steps", "steps"), with_unit("persons", "")
    ('duration (s)', 'daily steps', 'persons')
    """
    said = unit.lower() in label.lower().replace("(", " ").replace(")", " ").split()
    return f"{label} ({unit})" if unit and not said else label


@dataclass(frozen=True)
class Entry:
    """A validated catalog entry. See :data:`ENTRY_SCHEMA` for the meaning of each field."""

    name: str
    description: str
    kind: str
    owner: str
    sensitivity: str
    schema: tuple[Column, ...]
    entity: str | None = None
    time: str | None = None
    layer: str | None = None
    primary_key: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    checks: EntryChecks = EntryChecks()
    source_file: Path | None = field(default=None, compare=False)

    def column(self, name: str) -> Column:
        for column in self.schema:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column '{name}'{did_you_mean(name, self.column_names)}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.schema]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.schema])


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _explain(error, document: dict) -> str:
    """Turn one JSON-Schema error into 'key: got X, expected Y (did you mean Z?)'."""
    key = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        extra = sorted(map(str, set(error.instance) - set(allowed)))
        hints = "; ".join(f"unknown key '{k}'{did_you_mean(k, allowed)}" for k in extra)
        return f"{key}: {hints}; allowed keys are {', '.join(sorted(allowed))}"
    if error.validator == "required":
        return f"{key}: {error.message}"
    if error.validator == "enum":
        return (f"{key}: got {error.instance!r}, expected one of "
                f"{', '.join(map(str, error.validator_value))}{did_you_mean(error.instance, map(str, error.validator_value))}")
    if error.validator == "type":
        expected = error.validator_value
        article = "an" if str(expected)[:1] in "aeiou" else "a"
        return f"{key}: got {error.instance!r} ({type(error.instance).__name__}), expected {article} {expected}"
    if error.validator == "pattern":
        return f"{key}: got {error.instance!r}, expected lower_snake_case (pattern {error.validator_value})"
    return f"{key}: {error.message}"


def load_entry(path: str | Path) -> Entry:
    """Read and validate one catalog file.

    Raises
    ------
    CatalogError
        Naming the file, the key and what was expected, for every problem found at once.
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(document, dict):
        raise CatalogError(f"{path}: expected a mapping of keys (name, description, kind, ...), "
                           f"got {type(document).__name__}")
    try:
        _fast_validator()(document)
    except fastjsonschema.JsonSchemaException:
        problems = _all_problems(document)
        try:  # report consistency problems in the same run where the structure allows
            problems += _check_consistency(document, path)
        except (KeyError, TypeError, AttributeError):
            pass
    else:
        problems = _check_consistency(document, path)
    if problems:
        raise CatalogError(f"{path}: invalid catalog entry:\n  - " + "\n  - ".join(problems))
    columns = tuple(
        Column(name=c["name"], type=c["type"], unit=c.get("unit"), description=c.get("description", ""),
               nullable=c.get("nullable", True), dims=tuple(c.get("dims", ())), checks=_column_checks(c.get("checks", {})),
               values=tuple(c.get("values", ())), label=c.get("label", ""))
        for c in document["schema"]
    )
    return Entry(
        name=document["name"], description=document["description"].strip(), kind=document["kind"],
        owner=document["owner"], sensitivity=document["sensitivity"], schema=columns,
        entity=document.get("entity"), time=document.get("time"), layer=document.get("layer"),
        primary_key=tuple(document.get("primary_key", ())), references=tuple(document.get("references", ())),
        checks=EntryChecks(unique_local_minute=document.get("checks", {}).get("unique_local_minute", {}).get("value")),
        source_file=path,
    )


def _column_checks(declared: dict) -> ColumnChecks:
    """The ``checks`` mapping of a validated column as :class:`ColumnChecks`."""
    bounds = declared.get("range")
    return ColumnChecks(range=tuple(bounds) if bounds else None, range_unit=declared.get("range_unit"),
                        not_in_future=declared.get("not_in_future", False))


@functools.lru_cache(maxsize=1)
def _fast_validator():
    return fastjsonschema.compile(ENTRY_SCHEMA)


def _all_problems(document: dict) -> list[str]:
    """Every problem at once, with its key path: only needed when an entry is wrong.

    ``jsonschema`` reports all errors with their paths but takes ~1.5 s to import, so valid
    catalogs are checked with the compiled ``fastjsonschema`` validator and this runs on failure.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(ENTRY_SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [_explain(e, document) for e in errors]


def _check_consistency(document: dict, path: Path) -> list[str]:
    """Checks JSON Schema cannot express: names agree, declared key columns exist."""
    problems = []
    if document.get("name") != path.stem:
        problems.append(f"name: got {document.get('name')!r}, expected {path.stem!r} (the file name without .yaml)")
    names = [c["name"] for c in document["schema"] if isinstance(c, dict) and isinstance(c.get("name"), str)]
    for i, name in enumerate(names):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):  # JSON Schema's $ also matches before a final newline
            problems.append(f"schema[{i}].name: got {name!r}, expected lower_snake_case with nothing after it")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        problems.append(f"schema: column names appear twice: {', '.join(duplicated)}")
    dims = {d for c in document["schema"] if isinstance(c, dict) for d in c.get("dims", ()) if isinstance(d, str)}
    for key in ("entity", "time"):
        if key in document and document[key] not in set(names) | dims:
            problems.append(f"{key}: column {document[key]!r} is not in schema{did_you_mean(document[key], names)}")
    for i, column in enumerate(document.get("primary_key", [])):
        if column not in names:
            problems.append(f"primary_key[{i}]: column {column!r} is not in schema{did_you_mean(column, names)}")
    for i, column in enumerate(document["schema"]):
        bounds = column.get("checks", {}).get("range") if isinstance(column, dict) else None
        if bounds and bounds[0] > bounds[1]:
            problems.append(f"schema[{i}].checks.range: got {bounds}, expected [min, max] with min <= max")
    local_minute = document.get("checks", {}).get("unique_local_minute")
    if local_minute:
        value = local_minute.get("value")
        if value not in names:
            problems.append(f"checks.unique_local_minute.value: column {value!r} is not in schema{did_you_mean(value, names)}")
        # the check finds a row's person by the entity column and its local minute by the time column
        for key in ("entity", "time"):
            if key not in document:
                problems.append(f"checks.unique_local_minute: needs the entry's {key} column declared ({key}: ...)")
    return problems


class Catalog:
    """All entries of a catalog directory, validated together.

    Examples
    --------
    >>> catalog = default_catalog()
    >>> catalog["measurement"].column("value_si").description[:12]
    'Value conver'
    """

    def __init__(self, entries: dict[str, Entry], directory: Path | None = None):
        self._entries = dict(sorted(entries.items()))
        self.directory = directory

    @classmethod
    def from_directory(cls, directory: str | Path) -> Catalog:
        directory = Path(directory)
        if not directory.is_dir():
            raise CatalogError(f"{directory}: catalog directory not found; set EXPLORER_CATALOG to "
                               "a folder of <dataset>.yaml files")
        problems, entries = [], {}
        for path in sorted(directory.glob("*.yaml")):
            try:
                entry = load_entry(path)
            except CatalogError as exc:
                problems.append(str(exc))
            else:
                entries[entry.name] = entry
        if problems:
            raise CatalogError("\n".join(problems))
        return cls(entries, directory)

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"no catalog entry '{name}'{did_you_mean(name, self._entries)}; "
                           f"entries are in {self.directory}") from None

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)


def default_catalog_dir() -> Path:
    """``$EXPLORER_CATALOG``, else the repository's ``data_catalog/``, else the copy in the wheel."""
    if os.environ.get("EXPLORER_CATALOG"):
        return Path(os.environ["EXPLORER_CATALOG"])
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "data_catalog", package / "_data_catalog"):
        if candidate.is_dir():
            return candidate
    return package.parent / "data_catalog"


#: entry-point group through which a site package adds datasets: each entry point names a package
#: whose folder holds ``<dataset>.yaml`` entries (the tables its readers and steps write)
ENTRY_POINT_GROUP = "explorer.catalog"


@functools.lru_cache(maxsize=8)
def _plugin_dirs(search_path: tuple[str, ...]) -> tuple[Path, ...]:
    import importlib.util
    from importlib.metadata import entry_points

    folders = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        spec = importlib.util.find_spec(point.value)
        if spec is None or not spec.submodule_search_locations:
            raise CatalogError(f"entry point {point.name} = {point.value!r} (group {ENTRY_POINT_GROUP}) names no package "
                               "that can be found; it must name a package whose folder holds <dataset>.yaml entries")
        folders.append(Path(list(spec.submodule_search_locations)[0]))
    return tuple(folders)


def plugin_catalog_dirs() -> tuple[Path, ...]:
    """The catalog folders site packages declare (``explorer.catalog`` entry points), looked up
    again whenever ``sys.path`` changes."""
    import sys

    return _plugin_dirs(tuple(sys.path))


@functools.lru_cache(maxsize=8)
def _cached(directories: tuple[str, ...], stamp: tuple) -> Catalog:
    main, *plugins = [Catalog.from_directory(d) for d in directories]
    entries = {entry.name: entry for entry in main}
    for plugin in plugins:
        for entry in plugin:
            if entry.name in entries:
                raise CatalogError(f"{plugin.directory}/{entry.name}.yaml: the dataset {entry.name!r} is declared "
                                   "already; a site package adds datasets, it does not redefine them")
            entries[entry.name] = entry
    return Catalog(entries, main.directory)


def default_catalog() -> Catalog:
    """The catalog in :func:`default_catalog_dir` and the folders site packages declare
    (:func:`plugin_catalog_dirs`), re-read only when one of their files changes."""
    directories = (default_catalog_dir(), *plugin_catalog_dirs())
    stamp = tuple((p.name, p.stat().st_mtime_ns) for d in directories if d.is_dir() for p in sorted(d.glob("*.yaml")))
    return _cached(tuple(str(d) for d in directories), stamp)
