"""Characterisation of a cohort against the whole lake or another cohort, as OHDSI's
characterisation tables do: demographics, data available per modality, wearable and exposure
summaries and marker ageing, each with the standardised mean difference between the two groups.

Per person, features are read in one DuckDB query over the tables present; the summary is
computed from those rows. Every feature is measured the same way in both groups: at the index
date for a cohort, and for the whole lake at the target cohort's median index date.

References
----------
Austin PC. Balance diagnostics for comparing the distribution of baseline covariates between
treatment groups in propensity-score matched samples. Stat Med 2009;28:3083-3107 (the SMD).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError
from explorer.lake.engine import new_connection

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

CATEGORICAL = ["sex_at_birth", "race", "ethnicity", "ageotype"]
#: feature -> (domain, description, tables it needs)
FEATURES = {
    "age": ("demographics", "age at index (years)", {"person"}),
    "sex_at_birth": ("demographics", "sex at birth", {"person"}),
    "race": ("demographics", "race", {"person"}),
    "ethnicity": ("demographics", "ethnicity", {"person"}),
    "has_wearable": ("data availability", "any wearable day", {"wearable_daily"}),
    "valid_days_60": ("data availability", "60+ valid wear days", {"wearable_daily"}),
    "has_lab": ("data availability", "any lab result", {"measurement"}),
    "has_condition": ("data availability", "any condition", {"condition_occurrence"}),
    "has_exposure": ("data availability", "exposure at home linked", {"exposure_daily"}),
    "median_steps": ("wearables", "median daily steps (valid days)", {"wearable_daily"}),
    "median_resting_hr": ("wearables", "median resting heart rate (bpm)", {"wearable_daily"}),
    "median_sleep_minutes": ("wearables", "median sleep (min/day)", {"wearable_daily"}),
    "heat_wave_days_per_year": ("exposure", "heat-wave days per year at home", {"exposure_daily"}),
    "mean_tasmax": ("exposure", "mean daily maximum temperature (°C)", {"exposure_daily"}),
    "mean_pm25": ("exposure", "mean PM2.5 (µg/m³)", {"exposure_daily"}),
    "phenoage_accel": ("ageing", "PhenoAge acceleration, latest (years)", {"biological_age"}),
    "ageotype": ("ageing", "ageotype (dominant fast pathway)", {"ageotype"}),
}


def person_features(lake: Lake, groups: pd.DataFrame, versions=None) -> pd.DataFrame:
    """Per-person features of a characterisation, read in one DuckDB query.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    groups : pandas.DataFrame
        person_id, index_date (datetime) and group (a label); a person may be in several groups.
    versions : mapping of str to int, optional
        Read tables at these versions.

    Returns
    -------
    pandas.DataFrame
        One row per row of ``groups``: person_id, group and every feature of :data:`FEATURES`
        whose tables the lake holds (age in years at the index date, wearable medians over
        valid days, exposure means over every day, the latest PhenoAge acceleration at or before
        the index date, ...), plus ``slope_<LOINC>`` (the person's ageing rate of each marker,
        per year) when ``person_ageing_rate`` is there; ``attrs["marker_names"]`` names them.

    Examples
    --------
    >>> groups = pd.DataFrame({"person_id": ["p1"], "index_date": [pd.Timestamp("2024-03-01")], "group": ["t2d"]})
    >>> person_features(lake, groups)  # doctest: +SKIP
    """
    present = set(lake.tables())
    needed = {"person", "wearable_daily", "measurement", "condition_occurrence", "exposure_daily", "biological_age",
              "ageotype", "person_ageing_rate"} & present
    con = new_connection()
    try:
        lake.pinned_views(con, sorted(needed), dict(versions or {}))
        con.register("grp", groups[["person_id", "index_date", "group"]])
        select, joins = ["g.person_id", "g.group", "year(g.index_date) - p.year_of_birth AS age", "p.sex_at_birth",
                         "p.race", "p.ethnicity"], ["JOIN person p ON p.person_id = g.person_id"]
        if "wearable_daily" in present:
            joins.append("""LEFT JOIN (SELECT person_id, true AS has_wearable, count(*) FILTER (WHERE valid_day) >= 60 AS valid_days_60,
                               median(steps) FILTER (WHERE valid_day) AS median_steps,
                               median(resting_hr) FILTER (WHERE valid_day) AS median_resting_hr,
                               median(sleep_minutes) FILTER (WHERE valid_day) AS median_sleep_minutes
                               FROM wearable_daily GROUP BY person_id) w ON w.person_id = g.person_id""")
            select += ["coalesce(w.has_wearable, false) AS has_wearable", "coalesce(w.valid_days_60, false) AS valid_days_60",
                       "w.median_steps", "w.median_resting_hr", "w.median_sleep_minutes"]
        if "measurement" in present:
            joins.append("LEFT JOIN (SELECT DISTINCT person_id, true AS has_lab FROM measurement) m ON m.person_id = g.person_id")
            select.append("coalesce(m.has_lab, false) AS has_lab")
        if "condition_occurrence" in present:
            joins.append("LEFT JOIN (SELECT DISTINCT person_id, true AS has_condition FROM condition_occurrence) c "
                         "ON c.person_id = g.person_id")
            select.append("coalesce(c.has_condition, false) AS has_condition")
        if "exposure_daily" in present:
            joins.append("""LEFT JOIN (SELECT person_id, true AS has_exposure,
                               365.25 * count(*) FILTER (WHERE heat_wave) / count(*) AS heat_wave_days_per_year,
                               avg(tasmax) AS mean_tasmax, avg(pm25) AS mean_pm25
                               FROM exposure_daily GROUP BY person_id) e ON e.person_id = g.person_id""")
            select += ["coalesce(e.has_exposure, false) AS has_exposure", "e.heat_wave_days_per_year", "e.mean_tasmax",
                       "e.mean_pm25"]
        if "biological_age" in present:
            joins.append("""LEFT JOIN (SELECT b.person_id, arg_max(b.phenoage_accel, b.date) AS phenoage_accel
                               FROM biological_age b JOIN grp ON grp.person_id = b.person_id
                               WHERE b.date <= grp.index_date AND b.phenoage_accel IS NOT NULL GROUP BY b.person_id) b
                               ON b.person_id = g.person_id""")
            select.append("b.phenoage_accel")
        if "ageotype" in present:
            joins.append("LEFT JOIN ageotype a ON a.person_id = g.person_id")
            select.append("coalesce(nullif(a.fast_pathways, ''), CASE WHEN a.person_id IS NULL THEN NULL ELSE 'none fast' END) AS ageotype")
        query = f"SELECT {', '.join(select)} FROM grp g {' '.join(joins)}"
        rows = con.execute(query).df()
        if "person_ageing_rate" in present:
            rates = con.execute("""SELECT r.person_id, r.marker, r.slope FROM person_ageing_rate r
                                   WHERE r.person_id IN (SELECT person_id FROM grp)""").df()
            if len(rates):
                wide = rates.pivot_table(index="person_id", columns="marker", values="slope").add_prefix("slope_")
                rows = rows.merge(wide, left_on="person_id", right_index=True, how="left")
                if "marker_ageing" in present:
                    lake.pinned_views(con, ["marker_ageing"], dict(versions or {}))
                    names = dict(con.execute("SELECT marker, name FROM marker_ageing").fetchall())
                    rows.attrs["marker_names"] = {f"slope_{k}": v for k, v in names.items()}
    finally:
        con.close()
    return rows


def characterise(lake: Lake, target, against=None, *, versions=None, target_label: str | None = None,
                 against_label: str | None = None) -> pd.DataFrame:
    """A characterisation table of a cohort against another or against everyone in the lake.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    target : str, Definition, dict, path or pandas.DataFrame
        A saved cohort name, a definition (object, document, file or YAML text), or a frame of
        person_id and index_date.
    against : same as ``target``, optional
        The comparator; default everyone in the lake, measured at the target's median index
        date (:func:`median_index_date`).
    versions : mapping of str to int, optional
        Read tables at these versions.
    target_label, against_label : str, optional
        Group names in the result (default: the cohorts' names, "whole lake").

    Returns
    -------
    pandas.DataFrame
        One row per continuous feature (level "mean") and per level of a categorical or binary
        one: ``domain``, ``feature`` (its description, with unit), ``level``, ``kind``
        (continuous or proportion), then per group (``_1`` the target, ``_2`` the comparator)
        ``n`` (persons with a value), ``value`` (the mean, in the feature's unit, or the percent
        of persons with a value at that level), ``sd`` and ``count`` (persons at the level), and
        ``smd``, the standardised mean difference (dimensionless).
        ``attrs``: ``groups`` (the two labels), ``as_of`` (the lake's date) and ``sizes``.

    Raises
    ------
    explorer.errors.ExplorerError
        The target has no members.

    Notes
    -----
    For a continuous feature, with means :math:`m` and sample SDs :math:`s` of the two groups,
    :math:`d = (m_1 - m_2) / \\sqrt{(s_1^2 + s_2^2) / 2}`; for a proportion :math:`p`,
    :math:`d = (p_1 - p_2) / \\sqrt{(p_1 (1 - p_1) + p_2 (1 - p_2)) / 2}` (Austin 2009).
    :math:`|d| > 0.1` is the usual mark of an imbalance worth a look.

    References
    ----------
    Austin PC. Balance diagnostics for comparing the distribution of baseline covariates between
    treatment groups in propensity-score matched samples. Stat Med. 2009;28:3083-3107.

    Examples
    --------
    >>> from explorer import cohorts
    >>> cohorts.characterise(lake, "t2d")             # doctest: +SKIP
    >>> cohorts.characterise(lake, "t2d", "t2d-heat")  # doctest: +SKIP
    """
    target_members, target_name = _members(lake, target, versions)
    if target_members.empty:
        raise ExplorerError(f"cohort {target_name!r} has no members: there is nothing to characterise")
    as_of = median_index_date(target_members)
    if against is None:
        everyone = lake.sql("SELECT DISTINCT person_id FROM person", versions=versions)
        comparator_members, comparator_name = everyone.assign(index_date=as_of.date()), "whole lake"
    else:
        comparator_members, comparator_name = _members(lake, against, versions)
    labels = [target_label or target_name, against_label or comparator_name]
    if labels[0] == labels[1]:
        labels = [f"{labels[0]} (target)", f"{labels[1]} (comparator)"]
    groups = pd.concat([target_members.assign(group=labels[0]), comparator_members.assign(group=labels[1])],
                       ignore_index=True)
    groups["index_date"] = pd.to_datetime(groups["index_date"])
    rows = person_features(lake, groups, versions)
    table = summarise(rows, labels)
    table.attrs.update(groups=labels, as_of=str(as_of.date()),
                       sizes=[int((rows["group"] == label).sum()) for label in labels])
    return table


def characterise_saved(rows: pd.DataFrame, as_of: dict, target: str, against: str | None = None) -> pd.DataFrame:
    """:func:`characterise` of one saved cohort against another, from rows already read.

    Parameters
    ----------
    rows : pandas.DataFrame
        The per-person rows :func:`saved_cohort_rows` read: groups ``cohort:NAME`` and
        ``lake:YYYY-MM-DD``.
    as_of : dict of str to str
        Each cohort's date for the lake (:func:`saved_cohort_rows`' second result).
    target : str
        The saved cohort characterised.
    against : str, optional
        The comparator cohort; None: the whole lake at the target's date.

    Returns
    -------
    pandas.DataFrame
        The table :func:`characterise` gives for the same cohorts (no query is run).

    Raises
    ------
    explorer.errors.ExplorerError
        The target has no members.

    Notes
    -----
    The standardised mean differences of :func:`characterise` (Austin 2009).

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.cohorts.characterise import characterise_saved
    >>> rows = pd.DataFrame({"person_id": ["a", "b", "c", "a", "b", "c", "d"],
    ...                      "group": ["cohort:t2d"] * 3 + ["lake:2024-03-01"] * 4, "age": [60, 70, 65, 60, 70, 65, 40]})
    >>> table = characterise_saved(rows, {"t2d": "2024-03-01"}, "t2d")
    >>> table[["feature", "level", "n_1", "value_1", "n_2", "value_2", "smd"]].round(2)
                    feature level  n_1  value_1  n_2  value_2   smd
    0  age at index (years)  mean    3     65.0    4    58.75  0.63
    >>> table.attrs["groups"], table.attrs["sizes"]
    (['t2d', 'whole lake'], [3, 4])
    """
    first = rows[rows["group"] == f"cohort:{target}"]
    if first.empty:
        raise ExplorerError(f"cohort {target!r} has no members: there is nothing to characterise")
    second = rows[rows["group"] == (f"cohort:{against}" if against else f"lake:{as_of[target]}")]
    labels = [target, against or "whole lake"]
    if labels[0] == labels[1]:
        labels = [f"{labels[0]} (target)", f"{labels[1]} (comparator)"]
    both = pd.concat([first.assign(group=labels[0]), second.assign(group=labels[1])], ignore_index=True)
    # person_features reads the ageing rates of the persons it is given only
    both = both.drop(columns=[c for c in both.columns if c.startswith("slope_") and both[c].isna().all()])
    both.attrs = dict(rows.attrs)
    table = summarise(both, labels)
    table.attrs.update(groups=labels, as_of=as_of[target], sizes=[len(first), len(second)])
    return table


#: the level of a person without a value of a feature, and of one with a value of a continuous one
MISSING, WITH_VALUE = "(missing)", "with a value"
#: features whose presence depends on the date they are measured at (the latest value before it)
DATED = {"phenoage_accel"}


def describe_features(rows: pd.DataFrame) -> list[dict]:
    """The features of per-person rows as a characterisation table shows them.

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-person features (:func:`person_features`); person_id and group are not features.

    Returns
    -------
    list of dict
        Per feature column: ``column``, ``domain``, ``text`` (the description, with unit),
        ``kind`` (categorical, binary or continuous) and ``levels`` (a categorical one's values
        seen, as text; ``["yes"]`` for a binary one; none for a continuous one).

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.cohorts.characterise import describe_features
    >>> rows = pd.DataFrame({"person_id": ["a", "b"], "group": ["x", "x"], "age": [60, 70],
    ...                      "sex_at_birth": ["male", "female"], "has_lab": [True, False]})
    >>> [(d["column"], d["kind"], d["levels"]) for d in describe_features(rows)]
    [('age', 'continuous', []), ('sex_at_birth', 'categorical', ['female', 'male']), ('has_lab', 'binary', ['yes'])]
    """
    out = []
    names = rows.attrs.get("marker_names", {})
    for feature in [c for c in rows.columns if c not in ("person_id", "group")]:
        marker = f"{names[feature]} (LOINC {feature[6:]})" if feature in names else f"LOINC {feature[6:]}"
        domain, text, _ = FEATURES.get(feature, ("ageing", f"personal ageing rate, {marker}, per year", set()))
        if feature in CATEGORICAL:
            kind, levels = "categorical", sorted(rows[feature].dropna().astype(str).unique())
        elif pd.api.types.is_bool_dtype(rows[feature]) or set(rows[feature].dropna().unique()) <= {True, False}:
            kind, levels = "binary", ["yes"]
        else:
            kind, levels = "continuous", []
        out.append({"column": feature, "domain": domain, "text": text, "kind": kind, "levels": levels})
    return out


def person_levels(values: pd.Series, kind: str) -> pd.Series:
    """Each person's level of a feature.

    Parameters
    ----------
    values : pandas.Series
        The feature's values, one per person.
    kind : {"categorical", "binary", "continuous"}
        As :func:`describe_features` gives it.

    Returns
    -------
    pandas.Series
        Text: the value (categorical), "yes"/"no" (binary) or "with a value" (continuous);
        :data:`MISSING` without a value.

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.cohorts.characterise import person_levels
    >>> person_levels(pd.Series([True, False, None]), "binary").tolist()
    ['yes', 'no', '(missing)']
    """
    present = values.notna()
    if kind == "categorical":
        level = values.astype(object).where(~present, values.astype(str))
    elif kind == "binary":
        level = values.astype(object).where(~present, values.map(lambda v: "yes" if bool(v) else "no"))
    else:
        level = pd.Series(WITH_VALUE, index=values.index, dtype=object)
    return level.where(present, MISSING).astype(str)


def median_index_date(members: pd.DataFrame) -> pd.Timestamp:
    """The date the whole lake is measured at beside a cohort: its members' median index date.

    Parameters
    ----------
    members : pandas.DataFrame
        With an index_date column.

    Returns
    -------
    pandas.Timestamp
        The median index date; of an even number, the later of the two middle ones (a date
        some member has, never a mean of two).

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.cohorts.characterise import median_index_date
    >>> members = pd.DataFrame({"index_date": ["2024-01-05", "2024-03-01", "2024-02-01", "2024-04-01"]})
    >>> median_index_date(members)
    Timestamp('2024-03-01 00:00:00')
    """
    return pd.to_datetime(members["index_date"]).sort_values().iloc[len(members) // 2]


def saved_cohort_rows(lake: Lake, members: pd.DataFrame, versions=None) -> tuple[pd.DataFrame, dict]:
    """Per-person features of every group a public characterisation can show, in one query.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    members : pandas.DataFrame
        cohort, person_id, index_date of every saved cohort (``cohort_member``).
    versions : mapping of str to int, optional
        Read tables at these versions.

    Returns
    -------
    rows : pandas.DataFrame
        :func:`person_features` of each cohort's members at their own index dates (group
        ``cohort:NAME``) and of everyone in the lake at each cohort's median index date (group
        ``lake:YYYY-MM-DD``).
    as_of : dict of str to str
        Each cohort's date for the lake (ISO).

    Examples
    --------
    >>> rows, as_of = saved_cohort_rows(lake, lake.sql("SELECT * FROM cohort_member"))  # doctest: +SKIP
    >>> characterise_saved(rows, as_of, "t2d")                                           # doctest: +SKIP
    """
    everyone = lake.sql("SELECT DISTINCT person_id FROM person", versions=versions)
    frames, as_of = [], {}
    for name, group in members.groupby("cohort", sort=True):
        if group.empty:
            continue
        as_of[name] = str(median_index_date(group).date())
        frames.append(group[["person_id", "index_date"]].assign(group=f"cohort:{name}"))
    for day in sorted(set(as_of.values())) or [None]:
        if day is not None:
            frames.append(everyone.assign(index_date=pd.Timestamp(day).date(), group=f"lake:{day}"))
    if not frames:
        return pd.DataFrame(columns=["person_id", "group"]), as_of
    groups = pd.concat(frames, ignore_index=True)
    groups["index_date"] = pd.to_datetime(groups["index_date"])
    return person_features(lake, groups, versions), as_of


def summarise(rows: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """The characterisation table of per-person rows.

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-person features (:func:`person_features`) with a ``group`` column.
    labels : list of str
        The target's and the comparator's group labels, in that order.

    Returns
    -------
    pandas.DataFrame
        One row per continuous feature (level "mean") and per level of a categorical or binary
        one: ``domain``, ``feature`` (its description, with unit), ``level``, ``kind``
        (continuous or proportion), then per group (``_1`` the target, ``_2`` the comparator)
        ``n`` (persons with a value), ``value`` (the mean, in the feature's unit, or the percent
        of persons with a value at that level), ``sd`` and ``count`` (persons at the level), and
        ``smd``, the standardised mean difference (dimensionless).

    Notes
    -----
    For a continuous feature, with means :math:`m` and sample SDs :math:`s` of the two groups,
    :math:`d = (m_1 - m_2) / \\sqrt{(s_1^2 + s_2^2) / 2}`; for a proportion :math:`p`,
    :math:`d = (p_1 - p_2) / \\sqrt{(p_1 (1 - p_1) + p_2 (1 - p_2)) / 2}` (Austin 2009).
    :math:`|d| > 0.1` is the usual mark of an imbalance worth a look.

    References
    ----------
    Austin PC. Balance diagnostics for comparing the distribution of baseline covariates between
    treatment groups in propensity-score matched samples. Stat Med. 2009;28:3083-3107.

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.cohorts.characterise import summarise
    >>> rows = pd.DataFrame({"person_id": list("abcdef"), "group": ["t2d"] * 3 + ["lake"] * 3,
    ...                      "age": [60, 70, 65, 40, 50, 45], "has_lab": [True, True, False, False, True, False]})
    >>> summarise(rows, ["t2d", "lake"])[["feature", "level", "value_1", "value_2", "smd"]].round(2)
                    feature level  value_1  value_2   smd
    0  age at index (years)  mean    65.00    45.00  4.00
    1        any lab result   yes    66.67    33.33  0.71
    """
    out = []
    first, second = (rows[rows["group"] == label] for label in labels)
    for described in describe_features(rows):
        feature, domain, text, kind = described["column"], described["domain"], described["text"], described["kind"]
        if kind == "categorical":
            for level in described["levels"]:
                out.append(_proportion_row(domain, text, level, [g[feature].dropna().astype(str) == level for g in (first, second)]))
        elif kind == "binary":
            out.append(_proportion_row(domain, text, "yes", [g[feature].dropna().astype(bool) for g in (first, second)]))
        else:
            values = [pd.to_numeric(g[feature], errors="coerce").dropna() for g in (first, second)]
            stats = [(len(v), v.mean() if len(v) else np.nan, v.std(ddof=1) if len(v) > 1 else np.nan) for v in values]
            pooled = np.sqrt((stats[0][2] ** 2 + stats[1][2] ** 2) / 2)
            smd = (stats[0][1] - stats[1][1]) / pooled if pooled and np.isfinite(pooled) and pooled > 0 else np.nan
            out.append({"domain": domain, "feature": text, "level": "mean", "kind": "continuous",
                        "n_1": stats[0][0], "value_1": stats[0][1], "sd_1": stats[0][2], "count_1": np.nan,
                        "n_2": stats[1][0], "value_2": stats[1][1], "sd_2": stats[1][2], "count_2": np.nan, "smd": smd})
    table = pd.DataFrame(out)
    return table


def _proportion_row(domain, text, level, flags) -> dict:
    counts = [int(f.sum()) for f in flags]
    ns = [len(f) for f in flags]
    p = [c / n if n else np.nan for c, n in zip(counts, ns)]
    spread = np.sqrt((p[0] * (1 - p[0]) + p[1] * (1 - p[1])) / 2)
    smd = (p[0] - p[1]) / spread if spread and np.isfinite(spread) and spread > 0 else (0.0 if p[0] == p[1] else np.nan)
    return {"domain": domain, "feature": text, "level": level, "kind": "proportion",
            "n_1": ns[0], "value_1": 100 * p[0], "sd_1": np.nan, "count_1": counts[0],
            "n_2": ns[1], "value_2": 100 * p[1], "sd_2": np.nan, "count_2": counts[1], "smd": smd}


def standardised_mean_difference(first, second) -> float:
    """Standardised mean difference of two samples of a continuous variable.

    Parameters
    ----------
    first, second : array-like of float
        The two samples (same unit).

    Returns
    -------
    float
        :math:`d`, dimensionless: the difference of the means in pooled standard deviations.

    Notes
    -----
    .. math:: d = \\frac{\\bar{x}_1 - \\bar{x}_2}{\\sqrt{(s_1^2 + s_2^2) / 2}}

    with sample variances (``ddof=1``). :math:`|d| > 0.1` is the usual mark of an imbalance.

    References
    ----------
    Austin PC. Balance diagnostics for comparing the distribution of baseline covariates between
    treatment groups in propensity-score matched samples. Stat Med. 2009;28:3083-3107.

    Examples
    --------
    >>> from explorer.cohorts import standardised_mean_difference
    >>> standardised_mean_difference([1, 2, 3], [2, 3, 4])
    -1.0
    """
    first, second = np.asarray(first, float), np.asarray(second, float)
    pooled = np.sqrt((first.var(ddof=1) + second.var(ddof=1)) / 2)
    return float((first.mean() - second.mean()) / pooled)


def _members(lake: Lake, cohort, versions) -> tuple[pd.DataFrame, str]:
    from explorer.cohorts.definition import Definition
    from explorer.cohorts.run import as_definition, members
    from explorer.cohorts.store import members_of

    if isinstance(cohort, pd.DataFrame):
        missing = {"person_id", "index_date"} - set(cohort.columns)
        if missing:
            raise ExplorerError(f"a cohort frame needs columns person_id and index_date; it lacks {', '.join(sorted(missing))}")
        return cohort[["person_id", "index_date"]], cohort.attrs.get("cohort", "cohort")
    if isinstance(cohort, str) and "\n" not in cohort and not cohort.lower().endswith((".yaml", ".yml", ".json")):
        return members_of(lake, cohort, version=(versions or {}).get("cohort_member")), cohort
    definition = cohort if isinstance(cohort, Definition) else as_definition(cohort)
    return members(lake, definition, versions=versions), definition.name
