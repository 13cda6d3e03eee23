"""Safe Harbor de-identification of researcher downloads (45 CFR 164.514(b)(2)).

What an export does to a table before it leaves the lake:

- **direct identifiers** are removed: names, addresses, contact details, record and device
  numbers, file names and hashes, and every geographic unit smaller than a state (coordinates,
  census tracts, five-digit ZIP codes) (164.514(b)(2)(i)(A)-(R));
- **the person key** is replaced by a code made for this export only (random, its key not kept):
  the lake's pseudonym is a keyed hash *of* the source identifier, and 164.514(c) allows a
  re-identification code only if it is not derived from information about the person;
- **dates** tied to a person keep only their year, or, with ``dates="shift"``, move by a
  per-person number of days (the same for all of one person's dates, so intervals survive);
- **ages of 90 and over** become "90+", and a year of birth that implies it becomes "90+" too;
- **ZIP3** of an area with 20,000 people or fewer becomes "000" (the population table is
  ``data_catalog/reference/zip3_population.csv``; a site passes its own with ``population=``).

Where a column comes from decides what happens to it, not what it is called. An export of a
query traces every output column back to the lake columns whose values reach it (through
aliases, subqueries, CTEs, joins, ``*`` and set operations; :func:`trace_query`), and each lake
column has a class from its own table and name (:func:`lake_column_class`; lake column names are
fixed by the data contract, an alias is not). A column that *is* one lake column, renamed or
cast without changing its values, gets that column's rule; a column *computed* from a person
key, an identifier, a date, an age or a ZIP3 (``upper(person_id)``, ``strftime(date, ...)``,
``substr(zip3, 1, 2)``) is removed and listed, since no rule can say what survived the
computation; the year of a date (``year(d)``, ``date_part('year', d)``) is kept as a year. A
query whose columns cannot be traced (table functions such as ``read_csv``, recursive CTEs,
lambdas, ``COLUMNS(...)``) is refused, naming the column.

Everything removed or changed is listed in the result's ``attrs["safe_harbor"]``, per column
with the lake columns it came from, so the export says what it did.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

#: columns that name or locate a person, or a file about them: removed from every export
#: (matched against the column name in lower_snake_case; free text and raw records go too,
#: since they can hold anything, a source identifier included; a file's SHA-256 names the file)
IDENTIFIER_PATTERN = re.compile(
    r"(^|_)(name|names|given|family|surname|address|street|city|zip|zip5|zipcode|postal|phone|fax|e_?mail|ssn|mrn|"
    r"medical_record|account|license|licence|certificate|vehicle|device_id|serial|url|ip|ip_address|"
    r"biometric|photo|latitude|longitude|lat|lon|tract|tract_geoid|geoid|block|county|source_id|"
    r"source_value|source_file|source_name|source_path|patient|patient_ref|participant|subject|member|"
    r"identifier|file|path|record|reason|comment|comments|note|notes|text|free_text|sha256|hash|checksum)($|_)")
#: parts of a date of birth finer than the year: removed
BIRTH_PART_PATTERN = re.compile(r"(month|day|week)_of_birth|birth_(month|day|week)")
#: text columns holding a person key under another name (``mother_person``, ``linked_person_id``)
PERSON_KEY_PATTERN = re.compile(r"(^|_)person(_id)?$")
AGE_PATTERN = re.compile(r"(^|_)age($|_|s)")
#: values computed from the exact age, blanked where the age is shown as '90+'
DERIVED_FROM_AGE = re.compile(r"accel|residual")
DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?([+-]\d{2}:?\d{2}|Z)?$")
OLDEST_SHOWN = 89
ZIP3_POPULATION_LIMIT = 20_000
MASKED_ZIP3 = "000"

# The Safe Harbor class of a lake column: which rule its values get when exported as they are.
PERSON_KEY = "person key"
IDENTIFIER = "identifier"
BIRTH = "year or date of birth"
DATE = "date"
AGE = "age"
FROM_AGE = "derived from the exact age"
ZIP3 = "zip3"
SAFE = "safe"

#: functions whose result is one of the values of their single traced argument, so the rule of
#: that column still applies to it (``max(person_id)`` is a person key, ``lag(date)`` a date)
VALUE_PRESERVING = {"min", "max", "first", "last", "any_value", "arbitrary", "mode", "first_value", "last_value",
                    "nth_value", "lag", "lead", "coalesce", "ifnull"}
#: functions whose result is a count, whatever they count: no value of their argument reaches it
COUNTING = {"count", "count_star", "row_number", "rank", "dense_rank", "rank_dense", "percent_rank", "cume_dist",
            "ntile", "approx_count_distinct"}
#: functions that take the year of a date and nothing finer, with the part named where they need one
YEAR_ONLY = {"year": None, "isoyear": None, "date_part": 0, "datepart": 0, "date_trunc": 0, "datetrunc": 0}
YEAR_PARTS = {"year", "years", "y", "yr", "yrs", "isoyear"}
TEXT_TYPES = {"VARCHAR", "TEXT", "STRING", "CHAR", "BPCHAR"}
NUMBER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                "UBIGINT", "UHUGEINT", "FLOAT", "REAL", "DOUBLE", "DECIMAL", "NUMERIC"}
#: for each class, the casts that keep its values what they were (a person key to text, a
#: timestamp to a date); any other cast is a computation
PRESERVING_CASTS = {PERSON_KEY: TEXT_TYPES, ZIP3: TEXT_TYPES, BIRTH: NUMBER_TYPES, AGE: NUMBER_TYPES,
                    FROM_AGE: NUMBER_TYPES, DATE: None}  # None: a date or timestamp type


def zip3_population(path: str | Path | None = None) -> pd.DataFrame:
    """The population table: zip3 and population (people), from ``path`` or the catalog's."""
    if path is None:
        from explorer.catalog.entries import default_catalog_dir

        path = Path(default_catalog_dir()) / "reference" / "zip3_population.csv"
    table = pd.read_csv(path, dtype={"zip3": str}, comment="#")
    missing = {"zip3", "population"} - set(table.columns)
    if missing:
        raise ExplorerError(f"{path}: the population table needs columns zip3 and population (people); "
                            f"{', '.join(sorted(missing))} missing")
    bad = table[~table["zip3"].str.fullmatch(r"\d{3}")]
    if len(bad):
        raise ExplorerError(f"{path}, row {bad.index[0] + 2}: zip3 {bad['zip3'].iloc[0]!r} is not three digits")
    return table


def classify_column(name: str, *, text: bool, dated: bool, year: bool = False, time_of_day: bool = False,
                    holds_keys: bool = False, person: str = "person_id") -> str:
    """The Safe Harbor class of a column: ``PERSON_KEY``, ``IDENTIFIER``, ``BIRTH``, ``DATE``,
    ``AGE``, ``FROM_AGE``, ``ZIP3`` or ``SAFE``.

    Parameters
    ----------
    name
        The column's name (a lake column's own name, never an alias a query gave it).
    text
        Whether the column holds text (only text can hold a pseudonym).
    dated
        Whether it holds dates or timestamps.
    year
        Whether it holds years (a birth year is a date of birth to the year).
    time_of_day
        Whether it holds times of day without a date: finer than a year, so removed.
    holds_keys
        Whether its values are person keys of the lake, whatever its name.
    person
        The name of the person key column.
    """
    key = column_key(name)
    if key == column_key(person) or holds_keys or (text and PERSON_KEY_PATTERN.search(key)):
        return PERSON_KEY
    if IDENTIFIER_PATTERN.search(key) or BIRTH_PART_PATTERN.search(key) or time_of_day:
        return IDENTIFIER
    if "birth" in key and (dated or year):
        return BIRTH
    if dated:
        return DATE
    if AGE_PATTERN.search(key):
        return AGE
    if DERIVED_FROM_AGE.search(key):
        return FROM_AGE
    if key.startswith("zip3"):
        return ZIP3
    return SAFE


def lake_column_class(column: str, duckdb_type: str) -> str:
    """The class of a lake column from its name and its DuckDB type (``'TIMESTAMP WITH TIME ZONE'``).

    The type decides dates, not the values: a lake table's schema is declared in the catalog.
    """
    kind = str(duckdb_type).upper()
    return classify_column(column, text=kind in TEXT_TYPES, dated=kind.startswith(("DATE", "TIMESTAMP")),
                           year=kind in NUMBER_TYPES, time_of_day=kind.startswith("TIME") and not kind.startswith("TIMESTAMP"))


@dataclass(frozen=True)
class Lineage:
    """Where the values of one output column come from.

    Attributes
    ----------
    sources
        The lake columns (``"table.column"``) whose values reach this column; empty for
        constants, counts, and values computed from nothing in the lake.
    bare
        True if every value is a value of those columns unchanged (a column renamed, cast
        to text, or picked by ``max`` or ``lag``); False if something was computed from them.
    year
        True if the column is the year of one bare date column (``year(d)``), nothing finer.
    expression
        The SQL text of the output column, for the report.
    """

    sources: frozenset = frozenset()
    bare: bool = False
    year: bool = False
    expression: str = ""

    @classmethod
    def column(cls, source: str) -> Lineage:
        return cls(frozenset([source]), bare=True, expression=source)

    def computed(self, expression: str = "") -> Lineage:
        """These sources, computed into something else by ``expression``."""
        return Lineage(self.sources, bare=False, expression=expression or self.expression)

    @staticmethod
    def union(parts, expression: str = "", *, bare: bool = False) -> Lineage:
        """The sources of all ``parts``; bare (with ``bare=True``) only if every part that
        has sources is bare, as in ``UNION`` or a ``USING`` column of a join."""
        parts = list(parts)
        traced = [p for p in parts if p.sources]
        sources = frozenset().union(*(p.sources for p in parts))
        keeps = bare and bool(traced) and all(p.bare for p in traced)
        year = bare and bool(traced) and all(p.year for p in traced)
        return Lineage(sources, bare=keeps, year=year, expression=expression)


class UntraceableQuery(ExplorerError):
    """An export query with a column whose origin cannot be followed; the export is refused."""


@dataclass
class _Relation:
    """One table of a FROM clause as a query sees it: its alias and its columns in order."""

    alias: str
    columns: list  # [name, Lineage, hidden]; hidden: the right side's copy of a USING column


@dataclass
class _Scope:
    """What names mean at one point of a query: FROM relations, CTEs, earlier select aliases."""

    relations: list = field(default_factory=list)
    ctes: dict = field(default_factory=dict)
    aliases: dict = field(default_factory=dict)
    parent: _Scope | None = None

    def chain(self):
        scope = self
        while scope is not None:
            yield scope
            scope = scope.parent


@dataclass(frozen=True)
class TracedColumn:
    """One output column of a query: its name as written (``None`` where DuckDB makes one up)
    and its :class:`Lineage`."""

    name: str | None
    lineage: Lineage


def trace_query(query: str, columns_of) -> tuple[list[TracedColumn], dict]:
    """Each output column of ``query`` with the lake columns its values come from.

    Parameters
    ----------
    query
        One SELECT statement in DuckDB's dialect.
    columns_of
        ``columns_of(table)``: the lake table's columns as ``(name, duckdb_type)`` pairs,
        or ``None`` if there is no such lake table.

    Returns
    -------
    columns, classes
        The output columns in order, and the class (:func:`lake_column_class`) of every lake
        column they come from, keyed ``"table.column"``.

    Raises
    ------
    UntraceableQuery
        For a column whose origin cannot be followed, naming it and saying what to write instead.

    Notes
    -----
    The query is parsed by DuckDB itself (``json_serialize_sql``), so the tree is the one
    DuckDB runs; anything in it this tracer does not know is refused rather than guessed.
    """
    con = duckdb.connect()
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])
    finally:
        con.close()
    if tree.get("error"):
        raise UntraceableQuery(f"cannot export this query: an export takes one SELECT statement "
                               f"({tree.get('error_message')})")
    if len(tree["statements"]) != 1:
        raise UntraceableQuery(f"cannot export this query: an export takes one SELECT statement, "
                               f"got {len(tree['statements'])}")
    tracer = _Tracer(query, columns_of)
    columns = [TracedColumn(name, lineage) for name, lineage in tracer.node(tree["statements"][0]["node"], _Scope())]
    return columns, tracer.classes


class _Tracer:
    """Follows DuckDB's parse tree of one query from each output column down to lake columns."""

    def __init__(self, query: str, columns_of):
        self.query = query.encode()
        self.columns_of = columns_of
        self.classes: dict[str, str] = {}
        self.column = None  # the output column being traced, for messages

    def refuse(self, what: str, advice: str):
        where = f"column {self.column!r}: " if self.column else ""
        raise UntraceableQuery(f"cannot export this query: {where}{what}, so the export cannot tell which lake columns "
                               f"its values come from; {advice}")

    def text(self, expression: dict) -> str:
        start, length = expression.get("query_location", -1), expression.get("query_location_length", 0)
        if 0 <= start < len(self.query) and length:
            return self.query[start:start + length].decode(errors="replace")
        return ""

    # ---------------------------------------------------------------- query nodes
    def node(self, node: dict, parent: _Scope) -> list[tuple[str | None, Lineage]]:
        scope = parent
        entries = (node.get("cte_map") or {}).get("map") or []
        if entries:
            # each CTE sees the ones before it; traced in order, so a CTE that reads itself
            # (recursive) is not found and is refused as an unknown table
            scope = _Scope(parent=parent)
            for entry in entries:
                body = entry["value"]
                columns = self.node(body["query_node"], scope)
                scope.ctes[entry["key"].lower()] = self.renamed(columns, body.get("aliases") or [])
        kind = node.get("type")
        if kind == "SELECT_NODE":
            return self.select(node, scope)
        if kind == "SET_OPERATION_NODE":
            if "BY_NAME" in str(node.get("setop_type")):
                self.refuse("UNION BY NAME matches columns by name", "list the columns in the same order on both sides "
                            "and use UNION")
            children = node.get("children") or [node.get("left"), node.get("right")]
            sides = [self.node(child, scope) for child in children if child]
            if len({len(side) for side in sides}) != 1:
                self.refuse("the sides of a set operation have different numbers of columns", "give each side the "
                            "same columns")
            return [(sides[0][i][0], Lineage.union([side[i][1] for side in sides], bare=True,
                                                   expression=sides[0][i][1].expression))
                    for i in range(len(sides[0]))]
        if kind == "RECURSIVE_CTE_NODE":
            self.refuse("a recursive CTE", "export the rows of a query without WITH RECURSIVE")
        self.refuse(f"a {kind} in the query", "write it as a plain SELECT over lake tables")

    def renamed(self, columns: list, names: list) -> list:
        """``columns`` with their first names replaced, as ``t(a, b)`` or ``WITH c(a, b)`` do."""
        if len(names) > len(columns):
            self.refuse(f"{len(names)} column names given for {len(columns)} columns", "give one name per column")
        return [(names[i] if i < len(names) else name, lineage) for i, (name, lineage) in enumerate(columns)]

    def select(self, node: dict, parent: _Scope) -> list[tuple[str | None, Lineage]]:
        scope = _Scope(parent=parent)
        scope.relations = self.relations(node["from_table"], parent, [])
        outputs = []
        for item in node["select_list"]:
            if item.get("class") == "STAR":
                outputs += self.star(item, scope)
                continue
            alias = item.get("alias") or None
            outer = self.column  # a refusal names the outermost output column it happened in
            self.column = outer or alias or self.text(item) or None
            lineage = self.expression(item, scope)
            self.column = outer
            if item.get("class") != "COLUMN_REF" or lineage.bare or not lineage.expression:
                # a reference to a column computed elsewhere (a subquery's, an alias) keeps that computation's text
                lineage = Lineage(lineage.sources, lineage.bare, lineage.year, self.text(item) or lineage.expression)
            if alias is None and item.get("class") == "COLUMN_REF":
                alias = item["column_names"][-1]  # DuckDB names a bare reference after its column
            outputs.append((alias, lineage))
            if item.get("alias"):
                scope.aliases[item["alias"].lower()] = lineage  # DuckDB's lateral aliases
        return outputs

    def relations(self, ref: dict, parent: _Scope, left: list) -> list[_Relation]:
        """The relations a FROM item brings; ``left`` are those before it (a LATERAL sees them)."""
        kind = ref.get("type")
        if kind == "EMPTY":
            return []
        if kind == "BASE_TABLE":
            if ref.get("at_clause"):
                self.refuse("a table read AT a version", "export the table at a version with `explorer export TABLE "
                            "--version N`")
            name = ref["table_name"]
            columns = None
            if not ref.get("schema_name") and not ref.get("catalog_name"):
                columns = next((s.ctes[name.lower()] for s in parent.chain() if name.lower() in s.ctes), None)
            if columns is None:
                described = self.columns_of(name) if not ref.get("catalog_name") and ref.get("schema_name") in ("", "main") \
                    else None
                if described is None:
                    self.refuse(f"it reads {name!r}, which is not a lake table", "select from the lake's tables "
                                "(`explorer tables`)")
                columns = []
                for column, kind_of in described:
                    source = f"{name.lower()}.{column}"
                    self.classes[source] = lake_column_class(column, kind_of)
                    columns.append((column, Lineage.column(source)))
            columns = self.renamed(columns, ref.get("column_name_alias") or [])
            return [_Relation((ref.get("alias") or name).lower(), [[n, lin, False] for n, lin in columns])]
        if kind == "SUBQUERY":
            inner = _Scope(relations=list(left), parent=parent)
            columns = self.renamed(self.node(ref["subquery"]["node"], inner), ref.get("column_name_alias") or [])
            return [_Relation((ref.get("alias") or "unnamed_subquery").lower(), [[n, lin, False] for n, lin in columns])]
        if kind == "EXPRESSION_LIST":  # VALUES (...), (...)
            scope = _Scope(relations=list(left), parent=parent)
            rows = [[self.expression(e, scope) for e in row] for row in ref.get("values") or []]
            width = len(rows[0]) if rows else 0
            names = list(ref.get("expected_names") or []) or [f"col{i}" for i in range(width)]
            columns = [[names[i], Lineage.union([row[i] for row in rows], bare=True), False] for i in range(width)]
            return [_Relation((ref.get("alias") or "valueslist").lower(), columns)]
        if kind == "JOIN":
            before = self.relations(ref["left"], parent, left)
            after = self.relations(ref["right"], parent, left + before)
            if ref.get("join_type") in ("SEMI", "ANTI"):
                return before  # only the left side's columns come out
            using = [u.lower() for u in ref.get("using_columns") or []]
            if ref.get("ref_type") == "NATURAL":
                names = {c[0].lower() for r in after for c in r.columns}
                using = [c[0].lower() for r in before for c in r.columns if c[0].lower() in names]
            for name in using:
                # one column comes out for both sides (a FULL JOIN coalesces them): both lineages
                mine = next((c for r in before for c in r.columns if c[0].lower() == name and not c[2]), None)
                theirs = next((c for r in after for c in r.columns if c[0].lower() == name and not c[2]), None)
                if mine is None or theirs is None:
                    self.refuse(f"USING column {name!r} is missing on one side", "join with ON instead")
                mine[1] = Lineage.union([mine[1], theirs[1]], bare=True, expression=name)
                theirs[2] = True
            return before + after
        if kind == "TABLE_FUNCTION":
            function = (ref.get("function") or {}).get("function_name", "a table function")
            self.refuse(f"it reads {function}(...), a table function", "select from the lake's tables only")
        self.refuse(f"a FROM item of kind {kind}", "select from the lake's tables, subqueries or CTEs")

    def star(self, item: dict, scope: _Scope, *, within: bool = False) -> list[tuple[str, Lineage]]:
        """The columns a ``*`` (or ``t.*``, with EXCLUDE, REPLACE and RENAME) stands for."""
        if item.get("columns") or item.get("expr") is not None:
            self.refuse("COLUMNS(...) picks columns by pattern", "name the columns")
        relation = (item.get("relation_name") or "").lower()
        relations = [r for r in scope.relations if r.alias == relation] if relation else scope.relations
        if relation and not relations:
            self.refuse(f"{relation}.* names no table of the FROM clause", "name a table of the FROM clause")
        excluded = {e.lower() for e in item.get("exclude_list") or []}
        excluded_of = {((q.get("table") or "").lower(), q["column"].lower()) for q in item.get("qualified_exclude_list") or []}
        replaced = {r["key"].lower(): r["value"] for r in item.get("replace_list") or []}
        renames = {((r["key"].get("table") or "").lower(), r["key"]["column"].lower()): r["value"]
                   for r in item.get("rename_list") or []}
        outputs = []
        for rel in relations:
            for name, lineage, hidden in rel.columns:
                low = name.lower()
                if (hidden and not relation) or low in excluded or (rel.alias, low) in excluded_of \
                        or ("", low) in excluded_of:
                    continue
                if low in replaced:
                    lineage = self.expression(replaced[low], scope)
                outputs.append((renames.get((rel.alias, low), renames.get(("", low), name)), lineage))
        return outputs

    # ---------------------------------------------------------------- expressions
    def expression(self, e: dict, scope: _Scope) -> Lineage:
        kind, text = e.get("class"), self.text(e)
        if kind in ("CONSTANT", "PARAMETER"):
            return Lineage(expression=text)
        if kind == "COLUMN_REF":
            return self.reference(e["column_names"], scope, text)
        if kind == "STAR":  # hash(*), concat(*): every column, computed
            return Lineage.union([lin for _, lin in self.star(e, scope)], text)
        if kind == "COLLATE":
            return self.expression(e["child"], scope)
        if kind == "CAST":
            inner = self.expression(e["child"], scope)
            target = str((e.get("type_expr") or {}).get("type_name") or (e.get("cast_type") or {}).get("id", "")).upper()
            if inner.bare and self.keeps_values(inner, target):
                return Lineage(inner.sources, bare=True, expression=text)
            return inner.computed(text)
        if kind in ("FUNCTION", "WINDOW"):
            return self.function(e, scope, text)
        if kind == "SUBQUERY":
            columns = self.node(e["subquery"]["node"], _Scope(parent=scope))
            if e.get("subquery_type") == "SCALAR":
                if len(columns) != 1:
                    self.refuse("a scalar subquery with more than one column", "select one column in it")
                return Lineage(columns[0][1].sources, columns[0][1].bare, columns[0][1].year, text)
            parts = [lin for _, lin in columns] + ([self.expression(e["child"], scope)] if e.get("child") else [])
            return Lineage.union(parts, text)
        if kind in ("OPERATOR", "CONJUNCTION"):
            return Lineage.union([self.expression(c, scope) for c in e.get("children") or []], text)
        if kind == "COMPARISON":
            return Lineage.union([self.expression(e["left"], scope), self.expression(e["right"], scope)], text)
        if kind == "BETWEEN":
            return Lineage.union([self.expression(e[k], scope) for k in ("input", "lower", "upper")], text)
        if kind == "CASE":
            parts = [self.expression(check[k], scope) for check in e.get("case_checks") or []
                     for k in ("when_expr", "then_expr")]
            return Lineage.union(parts + [self.expression(e["else_expr"], scope)], text)
        if kind == "LAMBDA":
            self.refuse("a lambda", "compute it in a subquery over named columns, or leave it out")
        if kind == "POSITIONAL_REFERENCE":
            self.refuse("a positional column reference (#n)", "name the column")
        self.refuse(f"an expression of kind {kind} ({text})", "write it with plain columns and functions")

    def keeps_values(self, inner: Lineage, target: str) -> bool:
        """Whether casting ``inner`` (one class) to ``target`` leaves its values what they were."""
        classes = {self.classes[s] for s in inner.sources}
        if len(classes) != 1:
            return not classes
        allowed = PRESERVING_CASTS.get(next(iter(classes)), set())
        if allowed is None:
            return target.startswith(("DATE", "TIMESTAMP"))
        return target in allowed

    def function(self, e: dict, scope: _Scope, text: str) -> Lineage:
        name = str(e.get("function_name", "")).lower()
        arguments = [a["expression"] if "expression" in a else a for a in e.get("arguments") or e.get("children") or []]
        # a window's frame, partitions and order choose rows; offset and default are values
        arguments += [e[k] for k in ("offset_expr", "default_expr") if e.get(k)]
        if name in COUNTING:
            return Lineage(expression=text)
        parts = [self.expression(a, scope) for a in arguments]
        if name in YEAR_ONLY:
            part = YEAR_ONLY[name]
            literal = (arguments[part].get("literal") or {}).get("text", "") if part is not None and parts else ""
            dates = parts[1:] if part is not None else parts
            if (part is None or str(literal).lower() in YEAR_PARTS) and len(dates) == 1 and dates[0].bare \
                    and all(self.classes[s] in (DATE, BIRTH) for s in dates[0].sources):
                return Lineage(dates[0].sources, bare=False, year=True, expression=text)
        traced = [p for p in parts if p.sources]
        if name in VALUE_PRESERVING and len(traced) == 1 and traced[0].bare:
            return Lineage(traced[0].sources, bare=True, expression=text)
        return Lineage.union(parts, text)

    def reference(self, names: list, scope: _Scope, text: str) -> Lineage:
        """A column reference, ``col``, ``t.col``, ``schema.t.col`` or a struct field ``col.field``."""
        low = [n.lower() for n in names]
        if len(low) == 1:
            found = self.unqualified(low[0], scope)
            if found is None:
                self.refuse(f"{names[0]!r} names no column of the query", "check the column names")
            return found
        for split in range(len(low) - 1, 0, -1):  # the longest table qualifier that names a relation
            table, column, fields = low[split - 1], low[split], low[split + 1:]
            for s in scope.chain():
                for rel in s.relations:
                    if rel.alias == table:
                        hits = [c[1] for c in rel.columns if c[0].lower() == column]
                        if hits:
                            return hits[0].computed(text) if fields else hits[0]
        found = self.unqualified(low[0], scope)  # a struct column and its fields
        if found is not None:
            return found.computed(text)
        self.refuse(f"{'.'.join(names)!r} names no column of the query", "check the column names")

    @staticmethod
    def unqualified(name: str, scope: _Scope) -> Lineage | None:
        for s in scope.chain():
            hits = [c[1] for rel in s.relations for c in rel.columns if c[0].lower() == name and not c[2]]
            if hits:  # more than one is ambiguous, and DuckDB refuses to run it; both, to be safe
                return hits[0] if len(hits) == 1 else Lineage.union(hits, name, bare=True)
            if name in s.aliases:  # FROM columns first, as DuckDB binds them
                return s.aliases[name]
        return None


def safe_harbor(frame: pd.DataFrame, *, dates: str = "year", person: str = "person_id",
                reference_date: date | None = None, population: pd.DataFrame | None = None,
                shift_days: int = 180, shift_key: bytes | None = None, person_keys=None) -> pd.DataFrame:
    """``frame`` de-identified by the Safe Harbor method, each column judged by its name and values.

    This is for rows already out of the lake (a frame in a notebook), where nothing says where
    a column came from; an export from the lake (:func:`export`) traces each column to the lake
    columns it was computed from instead, so an alias cannot hide a column.

    Parameters
    ----------
    frame
        Rows for a researcher download: one table, or a join of several.
    dates
        ``"year"`` keeps only the year of each date; ``"shift"`` moves each person's dates by one
        number of days drawn for them in [-``shift_days``, ``shift_days``] (days of the week and
        intervals survive; the year may not).
    person
        The person key column, replaced by a code made for this export.
    reference_date
        The day ages are reckoned at for a year of birth (default: today).
    population
        zip3 and population; default :func:`zip3_population`. A ZIP3 the table does not list
        is masked too: no one has shown that more than 20,000 people live there.
    shift_key
        Key of the date shifts (default: random, not kept, so shifts cannot be undone).
    person_keys
        Every person key of the lake: a column holding any of them (however it is named) is
        recoded with the person column.

    Returns
    -------
    pandas.DataFrame
        The de-identified rows; ``attrs["safe_harbor"]`` lists what was removed and changed.
    """
    known = set(person_keys or ()) | (set(frame[person].dropna()) if person in frame.columns else set())
    classes, lineages = {}, []
    for column in frame.columns:
        series = frame[column]
        text = not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        holds_keys = bool(known) and text and series.isin(known).any()
        classes[str(column)] = classify_column(str(column), text=text, dated=_is_date(series), year=_is_year(series),
                                               holds_keys=holds_keys, person=person)
        lineages.append(Lineage.column(str(column)))
    return _deidentify(frame, lineages, classes, dates=dates, person=person, reference_date=reference_date,
                       population=population, shift_days=shift_days, shift_key=shift_key, person_keys=known)


def _deidentify(frame: pd.DataFrame, lineages: list[Lineage], classes: dict, *, dates: str, person: str = "person_id",
                reference_date: date | None = None, population: pd.DataFrame | None = None, shift_days: int = 180,
                shift_key: bytes | None = None, person_keys=()) -> pd.DataFrame:
    """``frame`` with each column treated by the classes of the lake columns it comes from.

    ``lineages[i]`` says where ``frame``'s i-th column comes from, ``classes`` the class of
    each source. A column that is one class's values unchanged gets that class's rule; one
    computed from anything but safe columns is removed; the report lists every decision.
    """
    if dates not in ("year", "shift"):
        raise ExplorerError(f"dates={dates!r}: use 'year' (keep the year only) or 'shift' (move each person's dates)")
    if frame.columns.duplicated().any():
        raise ExplorerError(f"columns {sorted(set(frame.columns[frame.columns.duplicated()]))} appear twice; give each "
                            "column its own name")
    out = frame.copy()
    report = {"method": "HIPAA Safe Harbor, 45 CFR 164.514(b)(2)", "dates": dates, "removed": [], "changed": [],
              "warnings": [], "columns": []}

    def label(column, lineage):
        # a column named after its only source says only its name, as table exports always did
        sources = sorted(lineage.sources)
        if not sources or (len(sources) == 1 and sources[0].rsplit(".", 1)[-1] == str(column)):
            return column
        return f"{column} (from {', '.join(sources)})"

    def decide(column, lineage, action, rule, kinds):
        report["columns"].append({"column": str(column), "from": sorted(lineage.sources), "expression": lineage.expression,
                                  "classes": sorted(kinds), "action": action, "rule": rule})
        if action == "removed":
            report["removed"].append(column)
        elif action != "kept" or rule:
            report["changed"].append(f"{label(column, lineage)}: {rule}")

    rules = {}  # column -> (class, lineage) for the columns whose values a rule can make safe
    for column, lineage in zip(list(out.columns), lineages):
        kinds = {classes[s] for s in lineage.sources}
        risky = kinds - {SAFE}
        if not risky:
            rules[column] = (SAFE, lineage)
        elif lineage.year and kinds <= {DATE}:
            rules[column] = ("year", lineage)
        elif (lineage.bare or (lineage.year and kinds == {BIRTH})) and len(kinds) == 1 and risky != {IDENTIFIER}:
            rules[column] = (next(iter(kinds)), lineage)
        else:
            what = ", ".join(sorted(risky))
            if len(kinds) > 1 and (lineage.bare or lineage.year):
                why = f"mixes values of {', '.join(sorted(kinds))} columns, which have different rules"
            elif lineage.bare or risky == {IDENTIFIER}:
                why = f"{what}: removed from every export"
            else:
                why = (f"computed from a {what} by {lineage.expression or 'an expression'}; only the column itself, "
                       "selected as it is, can be made safe")
            decide(column, lineage, "removed", why, kinds)
    out = out[list(rules)]

    # the person key columns: one code per person for this export, the same in every column
    key_columns = [c for c, (kind, _) in rules.items() if kind == PERSON_KEY]
    originals = {c: out[c] for c in key_columns}
    if key_columns:
        persons = pd.unique(pd.concat([out[c] for c in key_columns]).dropna())
        order = np.random.default_rng(secrets.randbits(64)).permutation(len(persons))
        codes = dict(zip(persons, [f"X{k + 1:07d}" for k in order]))
        for column in key_columns:
            out[column] = out[column].map(codes)
            decide(column, rules[column][1], "replaced", "person keys replaced by a code made for this export "
                   "(not derived from the person)", {PERSON_KEY})

    def keys_for(lineage):
        # the person whose dates these are: a key column from the same table, else the first
        tables = {s.split(".")[0] for s in lineage.sources}
        ranked = sorted(key_columns, key=lambda c: (c != person, not tables & {s.split(".")[0] for s in rules[c][1].sources}))
        return originals[ranked[0]] if ranked else None

    reference = reference_date or date.today()
    oldest = pd.Series(False, index=out.index)  # rows of persons aged 90 or over
    shift_key = shift_key or secrets.token_bytes(32)
    for column, (kind, lineage) in rules.items():
        series = out[column]
        if kind == BIRTH:
            years = _as_datetime(series).dt.year if _is_date(series) else pd.to_numeric(series, errors="coerce")
            old = reference.year - years > OLDEST_SHOWN
            oldest |= old.fillna(False)
            out[column] = years.astype("Int64").astype(str).where(~old, "90+").where(years.notna(), None)
            decide(column, lineage, "generalised", f"year of birth only, '90+' for ages of 90 and over at {reference}", {kind})
        elif kind == "year":
            if _is_date(series):
                out[column] = _as_datetime(series).dt.year.astype("Int64")
            decide(column, lineage, "kept", "", {DATE})
        elif kind == DATE:
            if dates == "year":
                out[column] = _as_datetime(series).dt.year.astype("Int64")
                decide(column, lineage, "generalised", "year only", {kind})
            else:
                keys = keys_for(lineage)
                if keys is None:
                    raise ExplorerError(f"cannot shift {column} by person: the rows have no {person} column (a person "
                                        "key selected as it is); use dates='year' or include the person key")
                shift = keys.map(lambda pid: _shift(shift_key, pid, shift_days))
                out[column] = _as_datetime(series) + pd.to_timedelta(shift, unit="D")
                decide(column, lineage, "shifted", f"shifted per person by up to {shift_days} days", {kind})
        elif kind == AGE:
            ages = pd.to_numeric(series, errors="coerce")
            oldest |= (ages >= OLDEST_SHOWN + 1).fillna(False)
            whole = np.floor(ages).astype("Int64").astype(str)
            out[column] = whole.where(ages < OLDEST_SHOWN + 1, "90+").where(ages.notna(), None)
            decide(column, lineage, "generalised", "whole years, '90+' from 90", {kind})
        elif kind == SAFE:
            _check_safe(column, series, person_keys)
            if len(series) and _is_date(series):  # computed from no date, yet dates: a year is all that is sure to be safe
                out[column] = _as_datetime(series).dt.year.astype("Int64")
                decide(column, lineage, "generalised", "holds dates: year only", {kind})
            else:
                decide(column, lineage, "kept", "", {kind})
    for column, (kind, lineage) in rules.items():
        if kind == FROM_AGE:
            # a value derived from the exact age (an acceleration is age less a fit) would undo '90+'
            if oldest.any():
                out[column] = out[column].astype(object).where(~oldest, None)
                decide(column, lineage, "generalised", "blank for ages of 90 and over (it would give the exact age back)", {kind})
            else:
                decide(column, lineage, "kept", "", {kind})
    zip_columns = [c for c, (kind, _) in rules.items() if kind == ZIP3]
    if zip_columns:
        table = zip3_population() if population is None else population
        if "source" in table and (table["source"] == "synthetic").any():
            report["warnings"].append("the ZIP3 population table has invented rows (source 'synthetic'); a site replaces "
                                      "data_catalog/reference/zip3_population.csv with Census figures")
        large = set(table.loc[pd.to_numeric(table["population"], errors="coerce") > ZIP3_POPULATION_LIMIT, "zip3"])
        for column in zip_columns:
            zip3 = out[column].astype("string")
            out[column] = zip3.where(zip3.isin(large) | zip3.isna(), MASKED_ZIP3)
            decide(column, rules[column][1], "masked", f"'{MASKED_ZIP3}' where 20,000 people or fewer live "
                   "(or the population is unknown)", {ZIP3})
    position = {str(c): i for i, c in enumerate(frame.columns)}
    report["columns"].sort(key=lambda entry: position[entry["column"]])
    out.attrs["safe_harbor"] = report
    return out


def _check_safe(column, series: pd.Series, person_keys) -> None:
    """Refuse a column traced to safe columns that still holds person keys: the trace missed a
    way a key reached it, and the export must not guess."""
    if not person_keys or pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return
    keys = {str(k).strip().lower() for k in person_keys}
    values = series.dropna().astype(str).str.strip().str.lower()
    if values.isin(keys).any():
        raise UntraceableQuery(f"cannot export column {column!r}: it holds person keys (pseudonyms) that the export "
                               "could not trace to a person key column; select person_id as it is (it is replaced by a "
                               "code made for this export), or leave the column out")


def export(lake: Lake, out, *, table: str | None = None, query: str | None = None, params=(), version: int | None = None,
           dates: str = "year", role: str = "researcher") -> pd.DataFrame:
    """Write a researcher download of ``table`` (at ``version``) or of ``query``'s rows to ``out``
    (.csv or .parquet), de-identified by the Safe Harbor method, and record it in the audit log.

    The role is checked first (exports need ``researcher``), and for a table against its catalog
    tier; a query runs on a connection holding only the role's tables. ``explorer export`` and
    notebooks call this, so both leave the same audit entry.

    Each column is judged by the lake columns its values come from (:func:`trace_query`), never
    by its name: ``upper(person_id) AS k`` is computed from a person key and is removed,
    ``zip3 AS area`` is a ZIP3 and is masked, ``person_id AS k`` gets the export's code. A query
    with a column whose origin cannot be followed is refused before it runs.

    Returns
    -------
    pandas.DataFrame
        The rows written; ``attrs["safe_harbor"]`` says what was removed and changed (per column,
        under ``"columns"``, with the lake columns it came from), and ``attrs["out"]`` where they went.

    Raises
    ------
    UntraceableQuery
        For a query column whose origin cannot be followed.

    Examples
    --------
    >>> rows = export(lake, "exports/daily.csv", table="wearable_daily")   # doctest: +SKIP
    >>> rows.attrs["safe_harbor"]["removed"]                                # doctest: +SKIP
    """
    from explorer.lake.engine import current_user
    from explorer.privacy.audit import AuditLog
    from explorer.privacy.roles import query_as, require, require_tables

    require(role, "export", "an export")
    if (table is None) == (query is None):
        raise ExplorerError("give a table to export, or a query (not both)")
    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise ExplorerError(f"export to {out}: name a .csv or .parquet file")
    described = {}

    def columns_of(name: str):
        if name.lower() not in described:
            if not lake.has_table(name.lower()):
                return None
            relation = lake.table(name.lower())
            described[name.lower()] = list(zip(relation.columns, map(str, relation.types)))
        return described[name.lower()]

    if table is not None:
        if not lake.has_table(table):
            raise lake._missing(table)
        require_tables(lake, role, [table], "an export")
        version = lake.version(table) if version is None else version
        relation = lake.table(table, version=version)
        frame = relation.df()
        lineages = [Lineage.column(f"{table}.{c}") for c in relation.columns]
        classes = {f"{table}.{c}": lake_column_class(c, t) for c, t in zip(relation.columns, map(str, relation.types))}
        dataset, parameters = table, {"table": table}
    else:
        traced, classes = trace_query(query, columns_of)  # before it runs: an untraceable query reads nothing
        frame = query_as(lake, role, query, list(params))
        _line_up(traced, frame)
        lineages = [c.lineage for c in traced]
        dataset, version, parameters = None, None, {"sql": query, "params": list(params)}
    keys = lake.sql("SELECT person_id FROM person")["person_id"] if lake.has_table("person") else []
    exported = _deidentify(frame, lineages, classes, dates=dates, person_keys=set(keys))
    report = exported.attrs["safe_harbor"]
    if len(frame.columns) and not len(exported.columns):
        reasons = "; ".join(f"{c['column']}: {c['rule']}" for c in report["columns"])
        raise ExplorerError(f"nothing left to export: every column was removed ({reasons})")
    audit = AuditLog(lake)
    audit.check_appendable()  # no file leaves without its audit entry (a tampered log takes none)
    out.parent.mkdir(parents=True, exist_ok=True)
    exported.to_csv(out, index=False) if out.suffix == ".csv" else exported.to_parquet(out, index=False)
    try:
        audit.record(user=current_user(), role=role, action="export", dataset=dataset, version=version, rows=len(exported),
                     parameters={**parameters, "dates": dates, "out": str(out),
                                 "removed": [str(c) for c in report["removed"]]})
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    exported.attrs["out"] = str(out)
    return exported


def _line_up(traced: list[TracedColumn], frame: pd.DataFrame) -> None:
    """Refuse unless the traced columns are the columns DuckDB returned, in order: a trace that
    lost or gained a column would give every later column another's rule."""
    if len(traced) != len(frame.columns):
        raise UntraceableQuery(f"cannot export this query: it returned {len(frame.columns)} columns where the export "
                               f"traced {len(traced)}; name the columns instead of using * with EXCLUDE or RENAME")
    for column, got in zip(traced, frame.columns):
        # DuckDB numbers a repeated name (person_id, person_id_1); any other difference is a trace gone wrong
        if column.name is not None and not re.fullmatch(re.escape(column.name) + r"(_\d+)?", str(got), re.IGNORECASE):
            raise UntraceableQuery(f"cannot export this query: column {got!r} was traced as {column.name!r}; give each "
                                   "column an alias (AS name)")



def column_key(column) -> str:
    """A column or key name in lower_snake_case ('Full Name' -> 'full_name'), as the patterns expect."""
    return re.sub(r"[^a-z0-9]+", "_", str(column).lower()).strip("_")


def _is_year(series: pd.Series) -> bool:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return len(values) > 0 and bool(values.between(1800, 2200).all())


def _as_datetime(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    return pd.to_datetime(series.astype(object), errors="coerce", format="mixed")


def _is_date(series: pd.Series) -> bool:
    """Datetimes, dates, or text that reads as dates ('2020-05-06', '2020-05-06T08:00')."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        sample = series.dropna().head(50)
        return len(sample) > 0 and all(isinstance(v, (date, pd.Timestamp)) or
                                       (isinstance(v, str) and DATE_TEXT.match(v.strip())) for v in sample)
    return False


def _shift(key: bytes, person_code, limit: int) -> int:
    digest = hmac.new(key, str(person_code).encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % (2 * limit + 1) - limit
