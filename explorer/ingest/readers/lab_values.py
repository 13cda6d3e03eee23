"""Times and results as laboratories and EHRs write them, parsed once for every lab reader.

Shared by the lab CSV readers (and meant for the FHIR reader): each function takes a column of
text and returns parsed columns plus, per row, the reason it cannot be read (None when it can),
so a reader quarantines exactly the rows that fail and says why.

Times (:func:`parse_times`)
    ISO 8601 calendar dates and times [1]_: ``YYYY-MM-DD`` (a date only: kept at 00:00 with
    precision ``day``), ``YYYY-MM-DD[ T]HH:MM[:SS[.fff]]`` (precision ``minute`` or ``second``),
    and the same with a UTC designator ``Z`` or an offset ``±HH[:MM]``: such a time is an
    instant, converted by the reader to the participant's local time. Slash or dot dates
    ``MM/DD/YYYY`` (United States) and ``DD/MM/YYYY``, ``DD.MM.YYYY`` (day first) are told apart
    per file: a first part over 12 means day first, a second part over 12 means month first; a
    file where every date could be either is refused unless its order is declared
    (``--date-format``), never guessed.

Results (:func:`parse_results`)
    A number, optionally preceded by a comparator (``<``, ``<=``, ``>``, ``>=``, as FHIR
    ``Quantity.comparator`` [2]_; ``≤``/``≥`` read as ``<=``/``>=``) for a result censored at a
    detection or reporting limit, and optionally followed by an abnormal flag of HL7 v2 table
    0078 (OBX-8) [3]_ (``5.0 H``, ``5.0 (H)``, ``5.0H``). Missing-result codes the source
    declares (default: empty, ``NA``, ``N/A``, ``-999``...) are told apart from bad values: they
    are counted as ignored, never stored as a value. Decimal commas are read only when declared
    (``--decimal-comma``): ``1,234`` is a thousand in one locale and one in another.

References
----------
.. [1] ISO 8601-1:2019, Date and time - Representations for information interchange, Part 1
   (calendar date 5.2.2, local time 5.3, UTC designator and offset 5.3.4).
.. [2] HL7 FHIR R4, datatypes: Quantity.comparator (value set quantity-comparator: <, <=, >=, >).
.. [3] HL7 v2.5.1, chapter 7, OBX-8 Interpretation Codes, user-defined table 0078.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

#: ``explorer ingest --date-format``: iso, us, day-first, or a strftime pattern
DATE_FORMAT_VARIABLE = "EXPLORER_LAB_DATE_FORMAT"
#: ``explorer ingest --decimal-comma``: "1" when results write decimals with a comma
DECIMAL_COMMA_VARIABLE = "EXPLORER_LAB_DECIMAL_COMMA"
#: ``explorer ingest --missing-code``: the codes, separated by a newline (a code may hold a comma)
MISSING_CODES_VARIABLE = "EXPLORER_LAB_MISSING_CODES"

DATE_FORMATS = ("iso", "us", "day-first")

#: missing-result codes read as "no result" when the ingest declares none: an empty cell and the
#: spellings R, SAS/SPSS exports and LIS extracts write for one, and -999/-9999, the common
#: numeric missing codes. A real result of -999 cannot occur in a lab (no concentration or count
#: is negative).
DEFAULT_MISSING_CODES = ("", "NA", "N/A", "NaN", "null", "NULL", ".", "-", "-999", "-9999")

#: HL7 v2 table 0078 abnormal flags kept apart from the value (OBX-8); ``<``/``>`` of that
#: table ("below/above absolute low/high") are not taken as flags, since they are comparators
#: when written before the number
ABNORMAL_FLAGS = ("L", "H", "LL", "HH", "LU", "HU", "N", "A", "AA", "U", "D", "B", "W", "S", "R", "I", "MS", "VS")

_COMPARATOR = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "≤": "<=", "≥": ">=", "=<": "<=", "=>": ">="}
_RESULT = re.compile(r"^\s*(?P<comparator><=|>=|=<|=>|<|>|≤|≥)?\s*(?P<number>[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?)"
                     r"\s*(?:\(\s*(?P<flag_paren>[A-Za-z]{1,2})\s*\)|(?P<flag>[A-Za-z]{1,2}))?\s*$")

_ISO = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<hm>\d{1,2}:\d{2})(?P<sec>:\d{2}(?:[.,]\d+)?)?"
                  r"(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?)?$")
_SLASH = re.compile(r"^(?P<a>\d{1,2})(?P<sep>[/.])(?P<b>\d{1,2})(?P=sep)(?P<year>\d{4})"
                    r"(?:[ T](?P<hm>\d{1,2}:\d{2})(?P<sec>:\d{2})?)?$")


def declared_options() -> dict:
    """The lab options of this ingest, as ``explorer ingest`` set them in the environment (so
    they reach reader processes too): date format, decimal comma, missing codes."""
    fmt = os.environ.get(DATE_FORMAT_VARIABLE, "").strip() or None
    comma = os.environ.get(DECIMAL_COMMA_VARIABLE, "").strip().lower() in ("1", "true", "yes")
    codes = os.environ.get(MISSING_CODES_VARIABLE)
    missing = tuple(c.strip() for c in codes.split("\n")) if codes is not None else DEFAULT_MISSING_CODES
    return {"date_format": fmt, "decimal_comma": comma, "missing_codes": missing}


def parse_results(text: pd.Series, *, decimal_comma: bool = False,
                  missing_codes=DEFAULT_MISSING_CODES, column: str = "result") -> pd.DataFrame:
    """Split result cells into value, comparator and flag.

    Parameters
    ----------
    text : pandas.Series of str
        The cells as written (missing cells as None/NaN).
    decimal_comma : bool
        Whether the file writes decimals with a comma (``5,3``); declared, never guessed.
    missing_codes : sequence of str
        Cells that mean "no result" (compared after stripping spaces; ``""`` covers an empty cell).
    column : str
        The column's name, for the reasons.

    Returns
    -------
    pandas.DataFrame
        Columns ``value`` (float), ``comparator`` (``<``, ``<=``, ``>``, ``>=`` or None),
        ``flag`` (HL7 table 0078 code or None), ``missing`` (bool: a declared missing code) and
        ``problem`` (why the cell is not a result; None when it is, or when it is missing).

    Examples
    --------
    >>> parse_results(pd.Series(["<0.5", "5.0 H", ">=200"]))[["value", "comparator", "flag"]].values.tolist()
    [[0.5, '<', None], [5.0, None, 'H'], [200.0, '>=', None]]
    """
    cells = text.astype(object).where(text.notna(), "").astype(str).str.strip()
    codes = {str(code).strip() for code in missing_codes}  # cells are compared stripped, so are the codes
    missing = cells.isin(codes)
    parts = cells.str.extract(_RESULT)
    number = parts["number"]
    flag = parts["flag"].fillna(parts["flag_paren"]).str.upper()
    unknown_flag = flag.notna() & ~flag.isin(ABNORMAL_FLAGS)
    has_comma = number.fillna("").str.contains(",", regex=False)
    digits = number.str.replace(",", ".", regex=False) if decimal_comma else number.where(~has_comma)
    value = pd.to_numeric(digits, errors="coerce")
    problem = pd.Series([None] * len(cells), index=cells.index, dtype=object)

    def say(mask, reason):
        mask = np.asarray(mask, dtype=bool) & problem.isna().to_numpy() & ~missing.to_numpy()
        problem[mask] = reason if isinstance(reason, str) else reason[mask]

    if not decimal_comma:
        say(has_comma, column + ": " + cells.map(repr) + " has a decimal comma; if this file writes decimals "
            "with commas, ingest it with --decimal-comma")
    say(number.isna(), column + ": not a number (" + cells.map(repr) + "; expected e.g. 5.2, <0.5, >=200 or "
        "5.2 H; a code meaning 'no result' can be declared with --missing-code)")
    say(unknown_flag, column + ": flag " + flag.fillna("").map(repr) + " after the number is not an HL7 "
        "table 0078 abnormal flag (" + ", ".join(ABNORMAL_FLAGS) + ")")
    finite = np.isfinite(value.fillna(0).to_numpy(dtype="float64"))
    say(~finite, f"{column}: not a finite number")
    ok = problem.isna() & ~missing
    comparator = parts["comparator"].map(_COMPARATOR).astype(object)
    return pd.DataFrame({"value": value.where(ok & finite).astype("float64"),
                         "comparator": comparator.where(ok & comparator.notna(), None),
                         "flag": flag.astype(object).where(ok & flag.notna(), None),
                         "missing": missing.to_numpy(), "problem": problem}, index=cells.index)


def _slash_order(a: pd.Series, b: pd.Series, declared: str | None, column: str) -> str:
    """Whether slash dates are month first ('us') or day first, from the file's own dates or the
    declaration; raises ValueError with the message for the file when neither settles it."""
    if declared in ("us", "day-first"):
        return declared
    first_over, second_over = (a > 12).any(), (b > 12).any()
    if first_over and second_over:
        raise ValueError(f"{column}: dates are written both month first ({int((b > 12).sum())} with a second part "
                         f"over 12) and day first ({int((a > 12).sum())} with a first part over 12) in one file; "
                         "split the file by source, or declare one order with --date-format us or --date-format "
                         "day-first and let the others be quarantined")
    if first_over:
        return "day-first"
    if second_over:
        return "us"
    example = f"{int(a.iloc[0]):02d}/{int(b.iloc[0]):02d}"
    raise ValueError(f"{column}: dates such as {example}/... could be month first (US) or day first, and no date in "
                     f"this file has a part over 12 to settle it; declare the order with --date-format us or "
                     f"--date-format day-first (${DATE_FORMAT_VARIABLE}), then ingest again with --retry-quarantined")


def parse_times(text: pd.Series, *, date_format: str | None = None, column: str = "specimen_collected") -> pd.DataFrame:
    """Read specimen times as labs write them, with their precision and any UTC offset.

    Parameters
    ----------
    text : pandas.Series of str
        The cells as written.
    date_format : str, optional
        ``iso`` (only ISO 8601), ``us`` or ``day-first`` (the order of slash dates), or a strftime
        pattern; None detects slash dates' order from the file.
    column : str
        The column's name, for the reasons.

    Returns
    -------
    pandas.DataFrame
        ``wall`` (naive datetime64: the wall-clock time as written, 00:00 for a date only),
        ``offset_minutes`` (float: the time's UTC offset, NaN when it has none; ``wall`` minus it
        is UTC), ``precision`` ('day', 'minute' or 'second') and ``problem`` (None when read).

    Raises
    ------
    ValueError
        When slash dates are ambiguous for the whole file (every date could be read either way)
        and no order is declared: the file, not a row, is wrong.
    """
    cells = text.astype(object).where(text.notna(), "").astype(str).str.strip()
    n = len(cells)
    wall = pd.Series(pd.NaT, index=cells.index, dtype="datetime64[ns]")
    offset = pd.Series(np.nan, index=cells.index)
    precision = pd.Series([None] * n, index=cells.index, dtype=object)
    problem = pd.Series([None] * n, index=cells.index, dtype=object)
    if date_format and "%" in date_format:  # a declared pattern: every row must follow it
        zoned = "%z" in date_format or "%Z" in date_format
        # a pattern with an offset gives instants: kept as UTC (offset 0) for the reader to place in local time
        parsed = pd.to_datetime(cells, format=date_format, errors="coerce", utc=zoned)
        wall[:] = (parsed.dt.tz_localize(None) if zoned else parsed).to_numpy()
        if zoned:
            offset[parsed.notna().to_numpy()] = 0.0
        precision[:] = "second" if "%S" in date_format else "minute" if "%M" in date_format else "day"
        problem[wall.isna()] = f"{column}: not a time in the declared format {date_format!r}"
        return pd.DataFrame({"wall": wall, "offset_minutes": offset, "precision": precision.where(wall.notna(), None),
                             "problem": problem})
    iso = cells.str.extract(_ISO)
    is_iso = iso["date"].notna()
    if is_iso.any():
        seconds = iso["sec"].fillna(":00").str.replace(",", ".", regex=False).str[1:]
        # an hour without its leading zero (8:30), as spreadsheets write it, is read as 08:30
        stamp = iso["date"] + " " + iso["hm"].fillna("00:00").str.zfill(5) + ":" + seconds
        wall[is_iso] = pd.to_datetime(stamp[is_iso], format="ISO8601", errors="coerce")
        precision[is_iso] = np.where(iso["hm"].isna(), "day", np.where(iso["sec"].isna(), "minute", "second"))[is_iso.to_numpy()]
        zone = iso["zone"]
        sign = np.where(zone.str[0] == "-", -1.0, 1.0)
        hours = pd.to_numeric(zone.str[1:3], errors="coerce")
        minutes = pd.to_numeric(zone.str.replace(":", "", regex=False).str[3:5].replace("", "0"), errors="coerce").fillna(0)
        minutes_total = np.where(zone == "Z", 0.0, sign * (hours * 60 + minutes))
        offset[is_iso & zone.notna()] = minutes_total[(is_iso & zone.notna()).to_numpy()]
        bad_offset = (offset.abs() > 14 * 60).to_numpy()  # ISO 8601 allows any; real zones span -12:00..+14:00
        problem[bad_offset] = f"{column}: UTC offset beyond -12:00..+14:00"
    slash = cells.str.extract(_SLASH)
    is_slash = slash["a"].notna() & ~is_iso
    if is_slash.any():
        if date_format == "iso":
            problem[is_slash] = f"{column}: not ISO 8601 (YYYY-MM-DD[THH:MM[:SS]][Z|±HH:MM]) as declared with --date-format iso"
        else:
            a, b = pd.to_numeric(slash["a"]), pd.to_numeric(slash["b"])
            order = _slash_order(a[is_slash], b[is_slash], date_format, column)
            month, day = (a, b) if order == "us" else (b, a)
            stamp = (slash["year"] + "-" + month.fillna(1).astype(int).astype(str).str.zfill(2) + "-"
                     + day.fillna(1).astype(int).astype(str).str.zfill(2) + " "
                     + slash["hm"].fillna("00:00").str.zfill(5) + slash["sec"].fillna(":00"))
            wall[is_slash] = pd.to_datetime(stamp[is_slash], format="%Y-%m-%d %H:%M:%S", errors="coerce")
            precision[is_slash] = np.where(slash["hm"].isna(), "day", np.where(slash["sec"].isna(), "minute", "second"))[is_slash.to_numpy()]
            name = "month/day/year (US)" if order == "us" else "day/month/year"
            problem[is_slash & wall.isna()] = f"{column}: not a calendar date when read as {name}" + (
                "" if date_format else " (the order this file's other dates show); declare another with --date-format")
    unread = problem.isna() & wall.isna()
    problem[unread & (cells == "")] = f"{column}: empty"
    problem[unread & (cells != "")] = (column + ": " + cells.map(repr) + " is not a date or time; expected ISO 8601 "
                                       "(2015-02-01, 2015-02-01 08:30, 2015-02-01T08:30:00Z, 2015-02-01T08:30+01:00), "
                                       "MM/DD/YYYY or DD/MM/YYYY[ HH:MM], or declare a pattern with --date-format")[unread & (cells != "")]
    good = problem.isna()
    return pd.DataFrame({"wall": wall.where(good), "offset_minutes": offset.where(good),
                         "precision": precision.where(good, None), "problem": problem})
