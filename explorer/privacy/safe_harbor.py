"""Safe Harbor de-identification of researcher downloads (45 CFR 164.514(b)(2)).

What an export does to a table before it leaves the lake:

- **direct identifiers** are removed: names, addresses, contact details, record and device
  numbers, file names, and every geographic unit smaller than a state (coordinates, census
  tracts, five-digit ZIP codes) (164.514(b)(2)(i)(A)-(R));
- **the person key** is replaced by a code made for this export only (random, its key not kept):
  the lake's pseudonym is a keyed hash *of* the source identifier, and 164.514(c) allows a
  re-identification code only if it is not derived from information about the person;
- **dates** tied to a person keep only their year, or, with ``dates="shift"``, move by a
  per-person number of days (the same for all of one person's dates, so intervals survive);
- **ages of 90 and over** become "90+", and a year of birth that implies it becomes "90+" too;
- **ZIP3** of an area with 20,000 people or fewer becomes "000" (the population table is
  ``data_catalog/reference/zip3_population.csv``; a site passes its own with ``population=``).

Everything removed or changed is listed in the result's ``attrs["safe_harbor"]``, so the export
says what it did.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

#: columns that name or locate a person, or a file about them: removed from every export
#: (matched against the column name in lower_snake_case; free text and raw records go too,
#: since they can hold anything, a source identifier included)
IDENTIFIER_PATTERN = re.compile(
    r"(^|_)(name|names|given|family|surname|address|street|city|zip|zip5|zipcode|postal|phone|fax|e_?mail|ssn|mrn|"
    r"medical_record|account|license|licence|certificate|vehicle|device_id|serial|url|ip|ip_address|"
    r"biometric|photo|latitude|longitude|lat|lon|tract|tract_geoid|geoid|block|county|source_id|"
    r"source_value|source_file|source_name|source_path|patient|patient_ref|participant|subject|member|"
    r"identifier|file|path|record|reason|comment|comments|note|notes|text|free_text)($|_)")
#: parts of a date of birth finer than the year: removed
BIRTH_PART_PATTERN = re.compile(r"(month|day|week)_of_birth|birth_(month|day|week)")
AGE_PATTERN = re.compile(r"(^|_)age($|_|s)")
#: values computed from the exact age, blanked where the age is shown as '90+'
DERIVED_FROM_AGE = re.compile(r"accel|residual")
DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?([+-]\d{2}:?\d{2}|Z)?$")
OLDEST_SHOWN = 89
ZIP3_POPULATION_LIMIT = 20_000
MASKED_ZIP3 = "000"


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


def safe_harbor(frame: pd.DataFrame, *, dates: str = "year", person: str = "person_id",
                reference_date: date | None = None, population: pd.DataFrame | None = None,
                shift_days: int = 180, shift_key: bytes | None = None, person_keys=None) -> pd.DataFrame:
    """``frame`` de-identified by the Safe Harbor method.

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
    if dates not in ("year", "shift"):
        raise ExplorerError(f"dates={dates!r}: use 'year' (keep the year only) or 'shift' (move each person's dates)")
    out = frame.copy()
    report = {"method": "HIPAA Safe Harbor, 45 CFR 164.514(b)(2)", "dates": dates, "removed": [], "changed": [],
              "warnings": []}
    names = {c: column_key(c) for c in out.columns}
    removed = [c for c in out.columns if c != person and (IDENTIFIER_PATTERN.search(names[c])
                                                          or BIRTH_PART_PATTERN.search(names[c]))]
    out = out.drop(columns=removed)
    report["removed"] = removed
    # the person key, and any other column holding the same keys (a self-join, `person_id AS p`)
    known = set(person_keys or ()) | (set(out[person].dropna()) if person in out.columns else set())
    carriers = [c for c in out.columns if c == person or (known and not pd.api.types.is_numeric_dtype(out[c])
                                                          and out[c].isin(known).any())]
    codes, keys = None, out[person] if person in out.columns else None
    if carriers:
        persons = pd.unique(pd.concat([out[c] for c in carriers]).dropna())
        order = np.random.default_rng(secrets.randbits(64)).permutation(len(persons))
        codes = dict(zip(persons, [f"X{k + 1:07d}" for k in order]))
        for column in carriers:
            out[column] = out[column].map(codes)
            report["changed"].append(f"{column}: person keys replaced by a code made for this export "
                                     "(not derived from the person)")
    reference = reference_date or date.today()
    oldest = pd.Series(False, index=out.index)  # rows of persons aged 90 or over
    shift_key = shift_key or secrets.token_bytes(32)
    for column in list(out.columns):
        series, name = out[column], names[column]
        if "birth" in name and (_is_date(series) or _is_year(series)):
            years = _as_datetime(series).dt.year if _is_date(series) else pd.to_numeric(series, errors="coerce")
            old = reference.year - years > OLDEST_SHOWN
            oldest |= old.fillna(False)
            out[column] = years.astype("Int64").astype(str).where(~old, "90+").where(years.notna(), None)
            report["changed"].append(f"{column}: year of birth only, '90+' for ages of 90 and over at {reference}")
        elif _is_date(series):
            if dates == "year":
                out[column] = _as_datetime(series).dt.year.astype("Int64")
                report["changed"].append(f"{column}: year only")
            else:
                if keys is None:
                    raise ExplorerError(f"cannot shift {column} by person: the rows have no {person} column; "
                                        "use dates='year' or include the person key")
                shift = keys.map(lambda pid: _shift(shift_key, pid, shift_days))
                out[column] = _as_datetime(series) + pd.to_timedelta(shift, unit="D")
                report["changed"].append(f"{column}: shifted per person by up to {shift_days} days")
        elif AGE_PATTERN.search(name):
            ages = pd.to_numeric(series, errors="coerce")
            oldest |= (ages >= OLDEST_SHOWN + 1).fillna(False)
            out[column] = np.floor(ages).astype("Int64").astype(str).where(ages < OLDEST_SHOWN + 1, "90+").where(ages.notna(), None)
            report["changed"].append(f"{column}: whole years, '90+' from 90")
    if oldest.any():  # a value derived from the exact age (an acceleration is age less a fit) would undo '90+'
        for column in [c for c in out.columns if DERIVED_FROM_AGE.search(names[c])]:
            out[column] = out[column].astype(object).where(~oldest, None)
            report["changed"].append(f"{column}: blank for ages of 90 and over (it would give the exact age back)")
    zip_columns = [c for c in out.columns if names[c].startswith("zip3")]
    if zip_columns:
        table = zip3_population() if population is None else population
        if "source" in table and (table["source"] == "synthetic").any():
            report["warnings"].append("the ZIP3 population table has invented rows (source 'synthetic'); a site replaces "
                                      "data_catalog/reference/zip3_population.csv with Census figures")
        large = set(table.loc[pd.to_numeric(table["population"], errors="coerce") > ZIP3_POPULATION_LIMIT, "zip3"])
        for column in zip_columns:
            zip3 = out[column].astype("string")
            out[column] = zip3.where(zip3.isin(large) | zip3.isna(), MASKED_ZIP3)
            report["changed"].append(f"{column}: '{MASKED_ZIP3}' where 20,000 people or fewer live "
                                     "(or the population is unknown)")
    out.attrs["safe_harbor"] = report
    return out


def export(lake, out, *, table: str | None = None, query: str | None = None, params=(), version: int | None = None,
           dates: str = "year", role: str = "researcher") -> pd.DataFrame:
    """Write a researcher download of ``table`` (at ``version``) or of ``query``'s rows to ``out``
    (.csv or .parquet), de-identified by :func:`safe_harbor`, and record it in the audit log.

    The role is checked first (exports need ``researcher``), and for a table against its catalog
    tier; a query runs on a connection holding only the role's tables. ``explorer export`` and
    notebooks call this, so both leave the same audit entry.

    Returns
    -------
    pandas.DataFrame
        The rows written; ``attrs["safe_harbor"]`` says what was removed and changed, and
        ``attrs["out"]`` where they went.

    Examples
    --------
    >>> rows = export(lake, "exports/daily.csv", table="wearable_daily")   # doctest: +SKIP
    >>> rows.attrs["safe_harbor"]["removed"]                                # doctest: +SKIP
    """
    from explorer.lake.lake import _user
    from explorer.privacy.audit import AuditLog
    from explorer.privacy.roles import query_as, require, require_tables

    require(role, "export", "an export")
    if (table is None) == (query is None):
        raise ExplorerError("give a table to export, or a query (not both)")
    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise ExplorerError(f"export to {out}: name a .csv or .parquet file")
    if table is not None:
        if not lake.has_table(table):
            raise lake._missing(table)
        require_tables(lake, role, [table], "an export")
        version = lake.version(table) if version is None else version
        frame = lake.table(table, version=version).df()
        dataset, parameters = table, {"table": table}
    else:
        frame = query_as(lake, role, query, list(params))
        dataset, version, parameters = None, None, {"sql": query, "params": list(params)}
    keys = lake.sql("SELECT person_id FROM person")["person_id"] if lake.has_table("person") else []
    exported = safe_harbor(frame, dates=dates, person_keys=set(keys))
    out.parent.mkdir(parents=True, exist_ok=True)
    exported.to_csv(out, index=False) if out.suffix == ".csv" else exported.to_parquet(out, index=False)
    report = exported.attrs["safe_harbor"]
    AuditLog(lake.root).record(user=_user(), role=role, action="export", dataset=dataset, version=version,
                               rows=len(exported), parameters={**parameters, "dates": dates, "out": str(out),
                                                               "removed": report["removed"]})
    exported.attrs["out"] = str(out)
    return exported


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
