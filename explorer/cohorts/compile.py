"""A cohort definition as one DuckDB query: every value bound, never formatted into the SQL.

The query has one common table expression for the index dates (``idx``), one per criterion leaf
(the persons meeting it, given their index date), and ``steps``: one row per person with an index
date and one boolean column per attrition step (leaves combined with AND, OR, NOT as the document
says). Attrition counts and members are two SELECTs over ``steps``, so DuckDB sees the whole
definition at once and plans the joins itself; nothing loops over persons in Python.

Semantics a reader can check against the SQL:

- a window is ``index_date + start <= day <= index_date + end`` (timestamps by their date);
- a person with no row in a criterion's window does not meet it (no data never counts as a pass),
  so ``not`` of a criterion, and an exclusion, keep persons with no data;
- ``which: first`` / ``last``: of results at the same moment the lower counts as first and the
  higher as last, so a tie gives the same answer on every run;
- age is the year of the index date minus the year of birth (the lake keeps the year only);
- lab bounds are converted to the marker's SI unit and compared with ``value_si`` (for a LOINC code
  without a known SI unit, results reported in the criterion's unit, letter case aside, are
  compared as they are);
- wearable statistics are over valid days only (``wearable_daily.valid_day``); circadian metrics
  over the months (``wearable_circadian.period_start``) that start in the window;
- ICD codes match with and without their dot, and with ``descendants`` every code they prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from explorer.catalog.entries import default_catalog
from explorer.cohorts.definition import (
    CODE_SYSTEMS, EXPOSURE_VARIABLES, WEARABLE_METRICS, Combination, Condition, Definition, Demographics, Exposure, IndexDate, Lab, Range,
    Wearable, Window)

SQL_STATISTICS = {"median": "median", "mean": "avg", "min": "min", "max": "max"}


@dataclass
class Compiled:
    """The SQL of a definition and its bound parameters.

    Attributes
    ----------
    definition : Definition
        The definition compiled.
    common : str
        ``WITH idx AS (...), <one CTE per criterion leaf>, steps AS (...)``: the part every query
        shares.
    params : dict
        The named parameters (``$p0``, ``$p1``, ...) the SQL binds; no value is in the SQL text.
    labels : list of str
        One per attrition row: persons in the lake, with an index date, then each step.
    """

    definition: Definition
    common: str  # WITH ... steps AS (...)
    params: dict = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)  # one per attrition row

    @property
    def n_steps(self) -> int:
        """Number of inclusion and exclusion steps."""
        return len(self.definition.steps())

    def counts_sql(self) -> str:
        """One row: persons in the lake, with an index date, then remaining after each step."""
        remaining = [f"count(*) FILTER (WHERE {' AND '.join(f's{j}' for j in range(1, k + 1))}) AS n{k + 1}"
                     for k in range(1, self.n_steps + 1)]
        return (f"{self.common}\nSELECT (SELECT count(DISTINCT person_id) FROM person) AS n0, count(*) AS n1"
                + "".join(f",\n       {r}" for r in remaining) + "\nFROM steps")

    def members_sql(self) -> str:
        """person_id, index_date of every member, ordered by person_id."""
        where = " AND ".join(f"s{j}" for j in range(1, self.n_steps + 1)) or "TRUE"
        return f"{self.common}\nSELECT person_id, index_date FROM steps WHERE {where} ORDER BY person_id"

    def flags_sql(self) -> str:
        """Every person with an index date and whether they pass each step (s1, s2, ...)."""
        return f"{self.common}\nSELECT * FROM steps ORDER BY person_id"


class _Builder:
    def __init__(self):
        self.params: dict = {}
        self.ctes: list[str] = []

    def bind(self, value) -> str:
        key = f"p{len(self.params)}"
        self.params[key] = value
        return f"${key}"

    def cte(self, body: str) -> str:
        name = f"c{len(self.ctes) + 1}"
        self.ctes.append(f"{name} AS (\n  {body}\n)")
        return name

    # ---------------------------------------------------------------- pieces of WHERE clauses
    def range(self, expression: str, bounds: Range, scale: float = 1.0) -> str:
        return " AND ".join(f"{expression} {op} {self.bind(float(value) * scale)}" for op, value in bounds.bounds())

    def lab_range(self, alias: str, column: str, bounds: Range, scale: float = 1.0) -> str:
        """A lab value within ``bounds``, censored results included only where certain.

        A censored result (``value_comparator`` '<' 0.5, FHIR Quantity.comparator) stands for
        every value from 0 up to its limit, or from its limit up: it meets the bounds only when
        both ends of that span do (the bounds are one interval), so a criterion never counts a
        value the laboratory could not measure as if it were known. An exact value is both ends.
        """
        value, comparator = f"{alias}{column}", f"{alias}value_comparator"
        low_end = f"(CASE WHEN {comparator} IN ('<', '<=') THEN 0.0 ELSE {value} END)"
        high_end = f"(CASE WHEN {comparator} IN ('>', '>=') THEN CAST('infinity' AS DOUBLE) ELSE {value} END)"
        return f"({self.range(low_end, bounds, scale)} AND {self.range(high_end, bounds, scale)})"

    def window(self, day: str, window: Window | None) -> list[str]:
        if window is None:
            return []
        out = []
        if window.start is not None:
            out.append(f"{day} >= i.index_date + CAST({self.bind(window.start)} AS INTEGER)")
        if window.end is not None:
            out.append(f"{day} <= i.index_date + CAST({self.bind(window.end)} AS INTEGER)")
        return out

    def codes(self, column: str, codes: list[str], descendants: bool) -> str:
        normalised = f"replace({column}, '.', '')"
        plain = [c.replace(".", "").upper() for c in codes]
        if descendants:
            return "(" + " OR ".join(f"starts_with({normalised}, {self.bind(c)})" for c in plain) + ")"
        return f"list_contains({self.bind(plain)}, {normalised})"

    # ---------------------------------------------------------------------------- index dates
    def index_dates(self, rule: IndexDate) -> str:
        if rule.rule == "first_condition":
            body = (f"SELECT person_id, min(condition_start_date) AS index_date FROM condition_occurrence "
                    f"WHERE code_system = {self.bind(CODE_SYSTEMS[rule.code_system])} "
                    f"AND {self.codes('code', rule.codes, rule.descendants)} GROUP BY person_id")
        elif rule.rule == "first_lab":
            where = [f"loinc_code = {self.bind(rule.loinc)}"]
            if rule.value is not None:
                column, scale = _lab_value(rule.loinc, rule.unit)
                where.append(self.lab_range("", column, rule.value, scale))
                if column == "value_as_number":
                    where.append(f"lower(unit) = lower({self.bind(rule.unit)})")
            body = (f"SELECT person_id, min(CAST(measurement_datetime AS DATE)) AS index_date FROM measurement "
                    f"WHERE {' AND '.join(where)} GROUP BY person_id")
        elif rule.rule == "first_valid_wear_day":
            body = "SELECT person_id, min(date) AS index_date FROM wearable_daily WHERE valid_day GROUP BY person_id"
        else:
            body = f"SELECT person_id, CAST({self.bind(rule.date.date())} AS DATE) AS index_date FROM person"
        limits = ["person_id IN (SELECT person_id FROM person)", "index_date IS NOT NULL"]
        if rule.earliest:
            limits.append(f"index_date >= CAST({self.bind(rule.earliest.date())} AS DATE)")
        if rule.latest:
            limits.append(f"index_date <= CAST({self.bind(rule.latest.date())} AS DATE)")
        return f"SELECT person_id, index_date FROM ({body}) WHERE {' AND '.join(limits)}"

    # -------------------------------------------------------------------------------- leaves
    def leaf(self, criterion) -> str:
        """The name of a CTE holding the person_id of everyone meeting ``criterion``."""
        method = {Demographics: self.demographics, Condition: self.condition, Lab: self.lab,
                  Wearable: self.wearable, Exposure: self.exposure}[type(criterion)]
        return self.cte(method(criterion))

    def demographics(self, c: Demographics) -> str:
        where = []
        if c.age is not None:
            where.append(self.range("(year(i.index_date) - p.year_of_birth)", c.age))
        for key in ("sex_at_birth", "race", "ethnicity", "zip3"):
            values = getattr(c, key)
            if values:
                where.append(f"list_contains({self.bind(values)}, p.{key})")
        return f"SELECT p.person_id FROM person p JOIN idx i ON p.person_id = i.person_id WHERE {' AND '.join(where)}"

    def condition(self, c: Condition) -> str:
        where = [f"c.code_system = {self.bind(CODE_SYSTEMS[c.code_system])}",
                 self.codes("c.code", c.codes, c.descendants), *self.window("c.condition_start_date", c.window)]
        return (f"SELECT c.person_id FROM condition_occurrence c JOIN idx i ON c.person_id = i.person_id "
                f"WHERE {' AND '.join(where)} GROUP BY c.person_id HAVING count(*) >= {self.bind(c.min_count)}")

    def lab(self, c: Lab) -> str:
        where = [f"m.loinc_code = {self.bind(c.loinc)}",
                 *self.window("CAST(m.measurement_datetime AS DATE)", c.window)]
        having = [f"count(*) >= {self.bind(c.min_count)}"]
        if c.value is not None:
            column, scale = _lab_value(c.loinc, c.unit)
            if column == "value_as_number":
                where.append(f"lower(m.unit) = lower({self.bind(c.unit)})")
            within = f"coalesce({self.lab_range('m.', column, c.value, scale)}, false)"
            having.append({"any": f"bool_or({within})", "all": f"bool_and({within})",
                           # results at the same moment: the lower counts as first, the higher as last
                           "first": f"arg_min({within}, (m.measurement_datetime, m.{column}))",
                           "last": f"arg_max({within}, (m.measurement_datetime, m.{column}))"}[c.which])
        return (f"SELECT m.person_id FROM measurement m JOIN idx i ON m.person_id = i.person_id "
                f"WHERE {' AND '.join(where)} GROUP BY m.person_id HAVING {' AND '.join(having)}")

    def wearable(self, c: Wearable) -> str:
        parts = []
        metric = WEARABLE_METRICS[c.metric] if c.metric else None
        table, column = (metric.table, metric.column) if metric else ("wearable_daily", None)
        if table == "wearable_daily" or c.min_valid_days:
            having = []
            if c.min_valid_days:
                having.append(f"count(*) >= {self.bind(c.min_valid_days)}")
            if table == "wearable_daily" and column:
                having.append(self.range(f"{SQL_STATISTICS[c.statistic]}(w.{column})", c.value))
            parts.append(f"SELECT w.person_id FROM wearable_daily w JOIN idx i ON w.person_id = i.person_id "
                         f"WHERE {' AND '.join(['w.valid_day', *self.window('w.date', c.window)])} "
                         f"GROUP BY w.person_id HAVING {' AND '.join(having)}")
        if metric is not None and table != "wearable_daily":
            # wearable_circadian is per month (its time column is period_start); a plugin's table
            # is per its own time column: both are read the same way
            parts.append(self.per_person(metric, c.statistic, c.value, c.window))
        return "\n  INTERSECT\n  ".join(parts)

    def per_person(self, metric, statistic: str, value, window) -> str:
        """Persons whose ``statistic`` of ``metric`` over the rows of ``window`` is within
        ``value``; the table's time column is the one its catalog entry names."""
        time = default_catalog()[metric.table].time
        where = [f'w."{metric.column}" IS NOT NULL', *self.window(f'w."{time}"', window)]
        return (f'SELECT w.person_id FROM "{metric.table}" w JOIN idx i ON w.person_id = i.person_id '
                f"WHERE {' AND '.join(where)} GROUP BY w.person_id "
                f"HAVING {self.range(f'{SQL_STATISTICS[statistic]}(w.{metric.column})', value)}")

    def exposure(self, c: Exposure) -> str:
        metric = EXPOSURE_VARIABLES[c.variable]
        if metric.table != "exposure_daily" and c.statistic != "days":
            return self.per_person(metric, c.statistic, c.value, c.window)
        if c.statistic == "days":
            which = "e.heat_wave" if c.variable == "heat_wave" else self.range(f'e."{metric.column}"', c.day_value)
            statistic = f"count(*) FILTER (WHERE {which})"
        else:
            statistic = f'{SQL_STATISTICS[c.statistic]}(e."{metric.column}")'
        time = default_catalog()[metric.table].time
        where = self.window(f'e."{time}"', c.window) or ["TRUE"]
        return (f'SELECT e.person_id FROM "{metric.table}" e JOIN idx i ON e.person_id = i.person_id '
                f"WHERE {' AND '.join(where)} GROUP BY e.person_id HAVING {self.range(statistic, c.value)}")

    # ------------------------------------------------------------------------ combinations
    def expression(self, criterion) -> str:
        """A boolean SQL expression over ``i.person_id``: meets ``criterion``."""
        if isinstance(criterion, Combination):
            inner = [self.expression(child) for child in criterion.criteria]
            if criterion.operator == "not":
                return f"NOT ({inner[0]})"
            return "(" + f" {'AND' if criterion.operator == 'all' else 'OR'} ".join(inner) + ")"
        return f"i.person_id IN (SELECT person_id FROM {self.leaf(criterion)})"


def compile_definition(definition: Definition) -> Compiled:
    """Compile a cohort definition to one DuckDB query (see the module notes for what each
    criterion means in SQL).

    Parameters
    ----------
    definition : Definition
        The definition (:func:`explorer.cohorts.as_definition` makes one from text or a file).

    Returns
    -------
    Compiled
        The shared SQL, its parameters and the attrition labels; ``counts_sql()``,
        ``members_sql()`` and ``flags_sql()`` are the three queries, to run with ``params`` over
        views named as the lake's tables.

    Examples
    --------
    The SQL runs on any DuckDB connection with the tables the definition reads:

    >>> from datetime import date
    >>> import duckdb, pandas as pd
    >>> from explorer import cohorts
    >>> compiled = cohorts.compile_definition(cohorts.as_definition(
    ...     "{name: t2d-over-50, index_date: {rule: first_condition, codes: [E11]},"
    ...     " inclusion: [{kind: demographics, age: {gte: 50}}]}"))
    >>> compiled.labels
    ['persons in the lake', 'with an index date (first ICD10CM E11*)', 'include: age >= 50']
    >>> con = duckdb.connect()
    >>> _ = con.register("person", pd.DataFrame({"person_id": ["a", "b", "c"], "year_of_birth": [1960, 1990, 1955]}))
    >>> _ = con.register("condition_occurrence", pd.DataFrame({
    ...     "person_id": ["a", "b"], "condition_start_date": [date(2020, 5, 1), date(2021, 1, 1)],
    ...     "code_system": "http://hl7.org/fhir/sid/icd-10-cm", "code": ["E11.9", "E11"]}))
    >>> con.execute(compiled.counts_sql(), compiled.params).fetchall()
    [(3, 2, 1)]
    >>> con.execute(compiled.members_sql(), compiled.params).df()
      person_id index_date
    0         a 2020-05-01
    """
    builder = _Builder()
    index = builder.index_dates(definition.index_date)
    columns = []
    for k, (_, criterion, exclusion) in enumerate(definition.steps(), start=1):
        expression = builder.expression(criterion)
        columns.append(f"coalesce({'NOT ' if exclusion else ''}({expression}), false) AS s{k}")
    ctes = [f"idx AS (\n  {index}\n)", *builder.ctes]
    select = ", ".join(["i.person_id", "i.index_date", *columns])
    common = "WITH " + ",\n".join(ctes) + f",\nsteps AS (\n  SELECT {select}\n  FROM idx i\n)"
    labels = ["persons in the lake", f"with an index date ({definition.index_date.describe()})",
              *(label for label, _, _ in definition.steps())]
    return Compiled(definition, common, builder.params, labels)


def _lab_value(loinc: str, unit: str) -> tuple[str, float]:
    """The measurement column bounds in ``unit`` compare with, and the factor that brings them
    to it: value_si and the unit's factor to SI for a marker with a known SI unit, else
    value_as_number as reported."""
    from explorer.catalog.units import MARKER_UNITS, canonical_unit

    entry = MARKER_UNITS.get(loinc)
    if entry is None:
        return "value_as_number", 1.0
    return "value_si", entry[1][canonical_unit(unit)]
