"""Biological age from blood: PhenoAge (Levine et al. 2018) and Klemera-Doubal biological age,
with PhenoAge acceleration and a per-subgroup performance table.

PhenoAge
--------
.. math::

    xb &= -19.907 - 0.0336\\,\\text{albumin} + 0.0095\\,\\text{creatinine} + 0.1953\\,\\text{glucose}
          + 0.0954\\,\\ln(\\text{CRP}) - 0.0120\\,\\text{lymphocyte\\%} + 0.0268\\,\\text{MCV}
          + 0.3306\\,\\text{RDW} + 0.00188\\,\\text{ALP} + 0.0554\\,\\text{WBC} + 0.0804\\,\\text{age} \\\\
    M &= 1 - \\exp\\left(-e^{xb}\\,\\frac{e^{120\\gamma} - 1}{\\gamma}\\right),\\quad \\gamma = 0.0076927 \\\\
    \\text{PhenoAge} &= 141.50225 + \\frac{\\ln(-0.00553\\,\\ln(1 - M))}{c}

with albumin in g/L, creatinine in umol/L, glucose in mmol/L, CRP in mg/dL (its natural log),
lymphocytes in % of leukocytes, MCV in fL, RDW in %, alkaline phosphatase in U/L, white cells in
10^3/uL and age in years. The final divisor ``c`` circulates in two forms: 0.09165 and 0.090165
(the latter in the BioAge package of Kwon & Belsky 2021 and in the corrected calculator of Liu et
al. 2018/2019). 0.090165 is the default here (:data:`PHENOAGE_CONSTANT`); pass ``constant=`` for
the other, and every result carries the constant it used.

Klemera-Doubal
--------------
Trained on a reference subset: each marker ``j`` regressed on age gives intercept ``q_j``, slope
``k_j`` and residual SD ``s_j``; with ``r_j`` the marker's correlation with age,

.. math::

    BA_E = \\frac{\\sum_j (x_j - q_j) k_j / s_j^2}{\\sum_j (k_j / s_j)^2},\\quad
    s_{BA}^2 = \\operatorname{var}(BA_E - CA) - \\frac{1 - r_{char}^2}{r_{char}^2}
               \\frac{(CA_{max} - CA_{min})^2}{12 m},\\quad
    BA = \\frac{\\sum_j (x_j - q_j) k_j / s_j^2 + CA / s_{BA}^2}{\\sum_j (k_j / s_j)^2 + 1 / s_{BA}^2}

where :math:`r_{char} = \\sum_j \\frac{r_j^2}{\\sqrt{1 - r_j^2}} / \\sum_j \\frac{|r_j|}{\\sqrt{1 - r_j^2}}`
and ``m`` is the number of markers (Klemera & Doubal 2006; the form of Levine 2013 and of the
BioAge package, Kwon & Belsky 2021).

References
----------
Levine ME, Lu AT, Quach A, et al. An epigenetic biomarker of aging for lifespan and healthspan.
Aging. 2018;10:573-591.
Liu Z, Kuo PL, Horvath S, Crimmins E, Ferrucci L, Levine M. A new aging measure captures
morbidity and mortality risk across diverse subpopulations from NHANES IV: a cohort study. PLoS
Med. 2018;15:e1002718 (correction: PLoS Med. 2019;16:e1002760).
Klemera P, Doubal S. A new approach to the concept and computation of biological age. Mech
Ageing Dev. 2006;127:240-248.
Kwon D, Belsky DW. A toolkit for quantifying aging using the BioAge R package. GeroScience.
2021;43:2795-2808.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

#: final divisor of PhenoAge as BioAge (Kwon & Belsky 2021) uses it; 0.09165 also circulates
PHENOAGE_CONSTANT = 0.090165
GAMMA = 0.0076927
#: input -> (LOINC, unit the formula uses, coefficient)
PHENOAGE_INPUTS = {
    "albumin": ("1751-7", "g/L", -0.0336),
    "creatinine": ("2160-0", "umol/L", 0.0095),
    "glucose": ("2345-7", "mmol/L", 0.1953),
    "crp": ("1988-5", "mg/dL", 0.0954),  # enters as ln(CRP in mg/dL)
    "lymphocyte_percent": ("736-9", "%", -0.0120),
    "mcv": ("787-2", "fL", 0.0268),
    "rdw": ("788-0", "%", 0.3306),
    "alkaline_phosphatase": ("6768-6", "U/L", 0.00188),
    "white_cell_count": ("6690-2", "10*3/uL", 0.0554),
}
AGE_COEFFICIENT, INTERCEPT = 0.0804, -19.907
#: the formula's units from the lake's SI units (value_si): only CRP differs (mg/L -> mg/dL)
_FROM_SI = {"crp": 0.1}


def _formula_inputs(measurements: pd.DataFrame) -> pd.DataFrame:
    """(person_id, date, loinc_code, value in the formula's unit) from values and units as
    labs send them, converted by explorer.catalog.units; a unit that cannot be converted is an
    error naming the row."""
    from explorer.catalog.units import to_si

    needed = [c for c in ("person_id", "measurement_datetime", "loinc_code", "value_as_number", "unit")
              if c not in measurements.columns]
    if needed:
        raise ExplorerError(f"phenoage: measurements lack column(s) {', '.join(needed)}; expected the measurement "
                            "table's person_id, measurement_datetime, loinc_code, value_as_number, unit")
    by_code = {code: name for name, (code, _, _) in PHENOAGE_INPUTS.items()}
    rows = measurements[measurements["loinc_code"].isin(by_code) & measurements["value_as_number"].notna()]
    if "si_note" in rows:  # the ingest found no SI value (an empty unit) and said why: the marker is missing that day
        rows = rows[rows["si_note"].isna()]
    # one conversion factor per (marker, unit) pair, not a Python call per row
    factor = pd.Series(np.nan, index=rows.index)
    for (code, unit), group in rows.groupby(["loinc_code", rows["unit"].astype(object)], dropna=False, sort=False):
        to_unit, _, problem = to_si(code, 1.0, None if pd.isna(unit) else unit)
        if problem:
            row = rows.loc[group.index[0]]
            raise ExplorerError(f"phenoage: measurement row {group.index[0]} (person {row['person_id']}, "
                                f"{pd.Timestamp(row['measurement_datetime']).date()}): {problem}")
        factor[group.index] = to_unit * _FROM_SI.get(by_code[code], 1.0)
    converted = rows["value_as_number"].astype(float) * factor
    # a censored result (<0.5) enters at its limit: PhenoAge's inputs are all measurable in
    # health, and CRP below a detection limit is the common case; the day says which were
    censored = (rows["value_comparator"].notna() if "value_comparator" in rows else pd.Series(False, index=rows.index))
    return pd.DataFrame({"person_id": rows["person_id"].to_numpy(),
                         "date": pd.to_datetime(rows["measurement_datetime"]).dt.normalize().to_numpy(),
                         "input": rows["loinc_code"].map(by_code).to_numpy(), "value": converted.to_numpy(),
                         "censored": censored.to_numpy(dtype=bool)})


def phenoage(measurements: pd.DataFrame, persons: pd.DataFrame, constant: float = PHENOAGE_CONSTANT) -> pd.DataFrame:
    """PhenoAge (Levine et al. 2018) per person and date with all nine markers measured that day.

    Parameters
    ----------
    measurements : pandas.DataFrame
        Shaped like the ``measurement`` table: person_id, measurement_datetime, loinc_code,
        value_as_number and unit as the lab sent them (converted here to the formula's units;
        a unit that cannot be converted is an error naming the row, unless the ingest already
        recorded why in ``si_note``: that marker then counts as missing that day), optionally
        value_comparator (a censored result enters at its limit and is named in ``censored``).
    persons : pandas.DataFrame
        Shaped like ``person``: person_id, year_of_birth.
    constant : float, default :data:`PHENOAGE_CONSTANT` (0.090165)
        The formula's final divisor (see the module notes).

    Returns
    -------
    pandas.DataFrame
        One row per person and date with any input: chronological_age (years, from the year of
        birth, born 1 July), each input in the formula's unit (albumin g/L, creatinine umol/L,
        glucose mmol/L, crp mg/dL, lymphocyte_percent %, mcv fL, rdw %, alkaline_phosphatase
        U/L, white_cell_count 10^3/uL), ln_crp, xb, mortality_score (10-year probability of
        death, 0 to 1), phenoage (years), constant and ``missing`` (the inputs absent that day;
        phenoage is empty then, the row is kept) and ``censored`` (the inputs that entered at a
        censoring limit, e.g. CRP reported as <0.5; empty when none). A marker measured twice that day enters as the
        mean. ``attrs`` records the constant and the reference.

    Notes
    -----
    With the coefficients of :data:`PHENOAGE_INPUTS`,

    .. math::

        xb = -19.907 + 0.0804\\,\\mathrm{age} + \\textstyle\\sum_k w_k x_k \\quad
        (x_{CRP} = \\ln \\mathrm{CRP}),\\qquad
        M = 1 - \\exp\\left(-e^{xb}\\,\\frac{e^{120\\gamma} - 1}{\\gamma}\\right),\\ \\gamma = 0.0076927

    .. math:: \\mathrm{PhenoAge} = 141.50225 + \\frac{\\ln(-0.00553\\,\\ln(1 - M))}{c}

    References
    ----------
    Levine ME, Lu AT, Quach A, et al. An epigenetic biomarker of aging for lifespan and
    healthspan. Aging. 2018;10:573-591.
    Liu Z, Kuo PL, Horvath S, et al. PLoS Med. 2018;15:e1002718.

    Examples
    --------
    A 50-year-old's panel, in the units a US lab sends (g/dL, mg/dL, mg/L):

    >>> import pandas as pd
    >>> from explorer.ageing import phenoage
    >>> from explorer.ageing.biological_age import PHENOAGE_INPUTS
    >>> panel = {"albumin": (4.5, "g/dL"), "creatinine": (0.9, "mg/dL"), "glucose": (90.0, "mg/dL"),
    ...          "crp": (1.0, "mg/L"), "lymphocyte_percent": (30.0, "%"), "mcv": (90.0, "fL"), "rdw": (13.0, "%"),
    ...          "alkaline_phosphatase": (70.0, "U/L"), "white_cell_count": (6.0, "10*3/uL")}
    >>> measurements = pd.DataFrame([{"person_id": "a", "measurement_datetime": pd.Timestamp("2020-07-01 09:30"),
    ...                               "loinc_code": PHENOAGE_INPUTS[name][0], "value_as_number": value, "unit": unit}
    ...                              for name, (value, unit) in panel.items()])
    >>> row = phenoage(measurements, pd.DataFrame({"person_id": ["a"], "year_of_birth": [1970]})).iloc[0]
    >>> [round(float(row[name]), 2) for name in ("chronological_age", "albumin", "crp")], row["missing"]
    ([50.0, 45.0, 0.1], '')
    >>> round(float(row["mortality_score"]), 4), round(float(row["phenoage"]), 1)
    (0.0224, 41.8)
    """
    from explorer.ageing.markers import DAYS_PER_YEAR

    inputs = _formula_inputs(measurements)
    wide = inputs.pivot_table(index=["person_id", "date"], columns="input", values="value", aggfunc="mean")
    wide = wide.reindex(columns=list(PHENOAGE_INPUTS)).reset_index()
    born = wide[["person_id"]].merge(persons[["person_id", "year_of_birth"]], on="person_id", how="left")
    birthday = pd.to_datetime(born["year_of_birth"].astype("Int64").astype(str) + "-07-01", errors="coerce")
    wide.insert(2, "chronological_age", ((wide["date"] - birthday).dt.days / DAYS_PER_YEAR).to_numpy())
    with np.errstate(divide="ignore", invalid="ignore"):
        wide["ln_crp"] = np.log(wide["crp"].where(wide["crp"] > 0))
        xb = INTERCEPT + AGE_COEFFICIENT * wide["chronological_age"]
        for name, (_, _, coefficient) in PHENOAGE_INPUTS.items():
            xb = xb + coefficient * (wide["ln_crp"] if name == "crp" else wide[name])
        wide["xb"] = xb
        wide["mortality_score"] = 1 - np.exp(-np.exp(xb) * (np.exp(120 * GAMMA) - 1) / GAMMA)
        wide["phenoage"] = 141.50225 + np.log(-0.00553 * np.log(1 - wide["mortality_score"])) / constant
    wide["constant"] = constant
    absent = wide[list(PHENOAGE_INPUTS)].isna()
    absent["crp"] |= wide["ln_crp"].isna() & wide["crp"].notna()  # CRP of 0: no logarithm
    wide["missing"] = [", ".join(absent.columns[row]) for row in absent.to_numpy()]
    wide.loc[wide["chronological_age"].isna(), "missing"] += np.where(
        wide.loc[wide["chronological_age"].isna(), "missing"] == "", "age", ", age")
    censored = inputs[inputs["censored"]].groupby(["person_id", "date"])["input"].agg(
        lambda names: ", ".join(name for name in PHENOAGE_INPUTS if name in set(names)))
    wide["censored"] = pd.MultiIndex.from_frame(wide[["person_id", "date"]]).map(censored.to_dict()).fillna("").to_numpy() \
        if len(censored) else ""
    wide["date"] = wide["date"].dt.date
    wide.attrs.update(constant=constant, reference="Levine et al. 2018, Aging 10:573")
    return wide


def acceleration(frame: pd.DataFrame, biological: str = "phenoage", chronological: str = "chronological_age") -> pd.Series:
    """Biological-age acceleration: the residual of biological on chronological age.

    Parameters
    ----------
    frame : pandas.DataFrame
        With the two age columns (years).
    biological : str, default "phenoage"
        The biological-age column.
    chronological : str, default "chronological_age"
        The chronological-age column.

    Returns
    -------
    pandas.Series
        ``<biological>_accel`` in years on the index of ``frame``: positive is older than
        expected at that age; NaN where either age is missing, and everywhere with fewer than
        3 complete rows.

    Notes
    -----
    :math:`\\mathrm{accel}_i = B_i - (\\hat a + \\hat b\\,C_i)`, with :math:`\\hat a,
    \\hat b` the ordinary least-squares line of :math:`B` on :math:`C` over the complete rows
    (Levine et al. 2018's "PhenoAgeAccel").

    References
    ----------
    Levine ME, Lu AT, Quach A, et al. Aging. 2018;10:573-591.

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.ageing import acceleration
    >>> ages = pd.DataFrame({"chronological_age": [40.0, 50.0, 60.0, 70.0], "phenoage": [42.0, 48.0, 63.0, 67.0]})
    >>> acceleration(ages).round(2).tolist()
    [0.5, -2.5, 3.5, -1.5]
    """
    known = frame[[biological, chronological]].dropna()
    if len(known) < 3:
        return pd.Series(np.nan, index=frame.index, name=f"{biological}_accel")
    slope, intercept = np.polyfit(known[chronological], known[biological], 1)
    return (frame[biological] - (intercept + slope * frame[chronological])).rename(f"{biological}_accel")


def kdm_train(reference: pd.DataFrame, markers, age: str = "chronological_age") -> dict:
    """Klemera-Doubal parameters from a reference subset.

    Parameters
    ----------
    reference : pandas.DataFrame
        One row per person-date: a column per marker (each in its own unit) and the age
        (years). Rows missing any of them are left out.
    markers : list of str
        The marker columns.
    age : str, default "chronological_age"
        The age column.

    Returns
    -------
    dict
        ``markers``: a DataFrame indexed by marker with ``q`` (intercept, marker unit), ``k``
        (slope, marker unit per year), ``s`` (residual SD, marker unit) and ``r`` (correlation
        with age); ``s2_ba``: the variance of biological around chronological age (years^2);
        ``age``: the age column.

    Raises
    ------
    explorer.errors.ExplorerError
        Fewer complete rows than markers + 3.

    Notes
    -----
    Each marker regressed on age (least squares): :math:`x_j = q_j + k_j\\,CA + e_j`,
    :math:`s_j^2 = \\operatorname{mean}(e_j^2)`. Then, with
    :math:`BA_E = \\sum_j (x_j - q_j) k_j / s_j^2 \\,/\\, \\sum_j (k_j / s_j)^2`,

    .. math:: s_{BA}^2 = \\operatorname{var}(BA_E - CA) - \\frac{1 - r_{char}^2}{r_{char}^2}
              \\frac{(CA_{max} - CA_{min})^2}{12 m}

    with :math:`r_{char}` of the module notes and :math:`m` the number of markers.

    References
    ----------
    Klemera P, Doubal S. A new approach to the concept and computation of biological age. Mech
    Ageing Dev. 2006;127:240-248.
    Kwon D, Belsky DW. A toolkit for quantifying aging using the BioAge R package. GeroScience.
    2021;43:2795-2808.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from explorer.ageing import kdm_train
    >>> rng = np.random.default_rng(0)
    >>> age = rng.uniform(30, 80, 300)
    >>> reference = pd.DataFrame({"chronological_age": age, "sbp": 100 + 0.6 * age + rng.normal(0, 10, 300),
    ...                           "albumin": 48 - 0.08 * age + rng.normal(0, 2, 300),
    ...                           "creatinine": 60 + 0.4 * age + rng.normal(0, 12, 300)})
    >>> trained = kdm_train(reference, ["sbp", "albumin", "creatinine"])
    >>> trained["markers"][["k", "r"]].round(2)
                   k     r
    sbp         0.58  0.66
    albumin    -0.08 -0.54
    creatinine  0.39  0.44
    >>> round(trained["s2_ba"], 1)
    6.0
    """
    data = reference[[age, *markers]].dropna()
    if len(data) < len(markers) + 3:
        raise ExplorerError(f"kdm_train: {len(data)} complete reference rows for {len(markers)} markers: too few")
    ca = data[age].to_numpy()
    table = {}
    for marker in markers:
        x = data[marker].to_numpy()
        k, q = np.polyfit(ca, x, 1)
        s = np.sqrt(np.mean((x - (q + k * ca)) ** 2))
        table[marker] = {"q": q, "k": k, "s": s, "r": np.corrcoef(ca, x)[0, 1]}
    params = pd.DataFrame(table).T
    r = params["r"].abs()
    r_char = (r ** 2 / np.sqrt(1 - r ** 2)).sum() / (r / np.sqrt(1 - r ** 2)).sum()
    ba_e = _ba_e(data, params)
    s2_ba = np.var(ba_e - ca) - (1 - r_char ** 2) / r_char ** 2 * (ca.max() - ca.min()) ** 2 / (12 * len(markers))
    return {"markers": params, "s2_ba": float(s2_ba), "age": age}


def _ba_e(frame: pd.DataFrame, params: pd.DataFrame) -> np.ndarray:
    numerator = sum((frame[m].to_numpy() - p.q) * p.k / p.s ** 2 for m, p in params.iterrows())
    return numerator / ((params["k"] / params["s"]) ** 2).sum()


def kdm_age(frame: pd.DataFrame, trained: dict) -> pd.Series:
    """Klemera-Doubal biological age (with the chronological-age term) of each row.

    Parameters
    ----------
    frame : pandas.DataFrame
        The marker columns of ``trained`` (same units) and its age column (years).
    trained : dict
        :func:`kdm_train`'s result.

    Returns
    -------
    pandas.Series
        ``kdm_age`` in years on the index of ``frame`` (NaN where a marker or the age is
        missing). When ``s2_ba <= 0`` (markers correlated with each other, or too few) the
        chronological-age term is left out, with a warning, and the result is :math:`BA_E`.

    Notes
    -----
    .. math:: BA = \\frac{\\sum_j (x_j - q_j) k_j / s_j^2 + CA / s_{BA}^2}
                        {\\sum_j (k_j / s_j)^2 + 1 / s_{BA}^2}

    References
    ----------
    Klemera P, Doubal S. Mech Ageing Dev. 2006;127:240-248.
    Kwon D, Belsky DW. GeroScience. 2021;43:2795-2808.

    Examples
    --------
    Two 50-year-olds, the second with the markers of an older person:

    >>> import numpy as np, pandas as pd
    >>> from explorer.ageing import kdm_age, kdm_train
    >>> rng = np.random.default_rng(0)
    >>> age = rng.uniform(30, 80, 300)
    >>> reference = pd.DataFrame({"chronological_age": age, "sbp": 100 + 0.6 * age + rng.normal(0, 10, 300),
    ...                           "albumin": 48 - 0.08 * age + rng.normal(0, 2, 300),
    ...                           "creatinine": 60 + 0.4 * age + rng.normal(0, 12, 300)})
    >>> trained = kdm_train(reference, ["sbp", "albumin", "creatinine"])
    >>> two = pd.DataFrame({"chronological_age": [50.0, 50.0], "sbp": [130.0, 160.0], "albumin": [44.0, 40.0],
    ...                     "creatinine": [80.0, 100.0]})
    >>> kdm_age(two, trained).round(1).tolist()
    [50.0, 51.9]
    """
    import warnings

    params, s2_ba = trained["markers"], trained["s2_ba"]
    if s2_ba <= 0:
        warnings.warn(f"Klemera-Doubal: s2_BA = {s2_ba:.3g} <= 0 (markers correlated with each other, or too few): "
                      "the chronological-age term is left out, so kdm_age is BA_E", stacklevel=2)
    numerator = sum((frame[m].to_numpy() - p.q) * p.k / p.s ** 2 for m, p in params.iterrows())
    denominator = ((params["k"] / params["s"]) ** 2).sum()
    if s2_ba > 0:
        numerator = numerator + frame[trained["age"]].to_numpy() / s2_ba
        denominator = denominator + 1 / s2_ba
    return pd.Series(numerator / denominator, index=frame.index, name="kdm_age")


def subgroup_performance(frame: pd.DataFrame, predicted: str, target: str, groups: dict[str, pd.Series]) -> pd.DataFrame:
    """How a prediction does in each subgroup, so a model that works worse for some people says so.

    Parameters
    ----------
    frame : pandas.DataFrame
        With the ``predicted`` and ``target`` columns (years, for a biological age).
    predicted, target : str
        The columns compared.
    groups : dict of str to pandas.Series
        Grouping name (sex, race, age band, ...) to a label per row of ``frame``.

    Returns
    -------
    pandas.DataFrame
        The overall row first, then one per grouping and level: grouping, level, n (rows with
        both values), correlation (Pearson; NaN with 2 rows or fewer), mean_difference (bias,
        predicted - target), mean_absolute_difference and sd_difference (SD of the
        differences), in the unit of the columns.

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.ageing import subgroup_performance
    >>> frame = pd.DataFrame({"predicted": [41.0, 52.0, 58.0, 73.0, 44.0, 61.0],
    ...                       "age": [40.0, 50.0, 60.0, 70.0, 45.0, 55.0], "sex": ["F", "F", "F", "M", "M", "M"]})
    >>> table = subgroup_performance(frame, "predicted", "age", {"sex": frame["sex"]})
    >>> table[["grouping", "level", "n", "mean_difference", "mean_absolute_difference"]].round(2)
      grouping level  n  mean_difference  mean_absolute_difference
    0      all   all  6             1.50                      2.50
    1      sex     F  3             0.33                      1.67
    2      sex     M  3             2.67                      3.33
    """
    rows = []
    both = frame[[predicted, target]].notna().all(axis=1)

    def describe(grouping, level, mask):
        sub = frame.loc[mask & both]
        difference = sub[predicted] - sub[target]
        rows.append({"grouping": grouping, "level": level, "n": len(sub),
                     "correlation": sub[predicted].corr(sub[target]) if len(sub) > 2 else np.nan,
                     "mean_difference": difference.mean(), "mean_absolute_difference": difference.abs().mean(),
                     "sd_difference": difference.std()})

    describe("all", "all", pd.Series(True, index=frame.index))
    for grouping, labels in groups.items():
        labels = pd.Series(labels, index=frame.index)
        for level in sorted(labels.dropna().unique(), key=str):
            describe(grouping, str(level), labels == level)
    return pd.DataFrame(rows)


def biological_age_performance(con) -> pd.DataFrame:
    """PhenoAge and Klemera-Doubal age against chronological age, by subgroup.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection with the views ``biological_age`` and ``person``.

    Returns
    -------
    pandas.DataFrame
        :func:`subgroup_performance` of ``phenoage`` and of ``kdm_age`` on
        ``chronological_age`` (years), by sex at birth, race, ethnicity and age band (<40,
        40-49, ..., 80+), one block per model (column ``model``).

    Examples
    --------
    >>> biological_age_performance(lake.connection())  # doctest: +SKIP
    """
    frame = con.execute("""
        SELECT b.*, p.sex_at_birth, p.race, p.ethnicity FROM biological_age b LEFT JOIN person p USING (person_id)
        WHERE b.chronological_age IS NOT NULL""").df()
    bands = pd.cut(frame["chronological_age"], [0, 40, 50, 60, 70, 80, 200], right=False,
                   labels=["<40", "40-49", "50-59", "60-69", "70-79", "80+"]).astype(str)
    groups = {"sex at birth": frame["sex_at_birth"], "race": frame["race"], "ethnicity": frame["ethnicity"],
              "age band": bands}
    tables = []
    for model in ("phenoage", "kdm_age"):
        table = subgroup_performance(frame, model, "chronological_age", groups)
        table.insert(0, "model", model)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)
