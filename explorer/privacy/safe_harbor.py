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
IDENTIFIER_PATTERN = re.compile(
    r"(^|_)(name|names|given|family|address|street|city|zip|zip5|zipcode|postal|phone|fax|email|ssn|mrn|"
    r"medical_record|account|license|licence|certificate|vehicle|device_id|serial|url|ip|ip_address|"
    r"biometric|photo|latitude|longitude|lat|lon|tract|tract_geoid|geoid|block|county|source_id|"
    r"source_value|source_file|patient_ref|identifier|file|path)($|_)")
AGE_PATTERN = re.compile(r"(^|_)age($|_)|^chronological_age$")
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
                shift_days: int = 180, shift_key: bytes | None = None) -> pd.DataFrame:
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

    Returns
    -------
    pandas.DataFrame
        The de-identified rows; ``attrs["safe_harbor"]`` lists what was removed and changed.
    """
    if dates not in ("year", "shift"):
        raise ExplorerError(f"dates={dates!r}: use 'year' (keep the year only) or 'shift' (move each person's dates)")
    out = frame.copy()
    report = {"method": "HIPAA Safe Harbor, 45 CFR 164.514(b)(2)", "dates": dates, "removed": [], "changed": []}
    removed = [c for c in out.columns if c != person and IDENTIFIER_PATTERN.search(str(c).lower())]
    out = out.drop(columns=removed)
    report["removed"] = removed
    codes = None
    if person in out.columns:
        persons = pd.unique(out[person].dropna())
        order = np.random.default_rng(secrets.randbits(64)).permutation(len(persons))
        codes = dict(zip(persons, [f"X{k + 1:07d}" for k in order]))
        keys = out[person]
        out[person] = keys.map(codes)
        report["changed"].append(f"{person}: replaced by a code made for this export (not derived from the person)")
    key = shift_key or secrets.token_bytes(32)
    for column in list(out.columns):
        series = out[column]
        if _is_date(series):
            if dates == "year":
                out[column] = pd.to_datetime(series).dt.year.astype("Int64")
                report["changed"].append(f"{column}: year only")
            else:
                if codes is None:
                    raise ExplorerError(f"cannot shift {column} by person: the rows have no {person} column; "
                                        "use dates='year' or include the person key")
                shift = keys.map(lambda pid: _shift(key, pid, shift_days))
                out[column] = pd.to_datetime(series) + pd.to_timedelta(shift, unit="D")
                report["changed"].append(f"{column}: shifted per person by up to {shift_days} days")
    reference = reference_date or date.today()
    for column in list(out.columns):
        if column == "year_of_birth":
            years = pd.to_numeric(out[column], errors="coerce")
            old = reference.year - years > OLDEST_SHOWN
            out[column] = years.astype("Int64").astype(str).where(~old, "90+").where(years.notna(), None)
            report["changed"].append(f"year_of_birth: '90+' for ages of 90 and over at {reference}")
        elif AGE_PATTERN.search(str(column).lower()) and pd.api.types.is_numeric_dtype(out[column]):
            ages = out[column]
            out[column] = np.floor(ages).astype("Int64").astype(str).where(ages < OLDEST_SHOWN + 1, "90+").where(ages.notna(), None)
            report["changed"].append(f"{column}: whole years, '90+' from 90")
    if "zip3" in out.columns:
        table = zip3_population() if population is None else population
        large = set(table.loc[pd.to_numeric(table["population"], errors="coerce") > ZIP3_POPULATION_LIMIT, "zip3"])
        zip3 = out["zip3"].astype("string")
        out["zip3"] = zip3.where(zip3.isin(large) | zip3.isna(), MASKED_ZIP3)
        report["changed"].append(f"zip3: '{MASKED_ZIP3}' where 20,000 people or fewer live (or the population is unknown)")
    out.attrs["safe_harbor"] = report
    return out


def _is_date(series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if series.dtype == object:
        sample = series.dropna().head(20)
        return len(sample) > 0 and all(isinstance(v, (date, pd.Timestamp)) for v in sample)
    return False


def _shift(key: bytes, person_code, limit: int) -> int:
    digest = hmac.new(key, str(person_code).encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % (2 * limit + 1) - limit
