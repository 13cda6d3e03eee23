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
10^3/uL and age in years. The final constant ``c`` is printed as 0.090165 in Levine et al. 2018
(Aging 10:573, Table 1 notes) and as 0.09165 in later reproductions; 0.090165 is the published
one and the default, and every result carries the constant it used.

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
Klemera P, Doubal S. A new approach to the concept and computation of biological age. Mech
Ageing Dev. 2006;127:240-248.
Kwon D, Belsky DW. A toolkit for quantifying aging using the BioAge R package. GeroScience.
2021;43:2795-2808.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

#: published final constant of PhenoAge (Levine 2018); 0.09165 also circulates
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
    labs send them, converted by explorer.ingest.units; a unit that cannot be converted is an
    error naming the row."""
    from explorer.catalog.units import to_si

    needed = [c for c in ("person_id", "measurement_datetime", "loinc_code", "value_as_number", "unit")
              if c not in measurements.columns]
    if needed:
        raise ExplorerError(f"phenoage: measurements lack column(s) {', '.join(needed)}; expected the measurement "
                            "table's person_id, measurement_datetime, loinc_code, value_as_number, unit")
    by_code = {code: name for name, (code, _, _) in PHENOAGE_INPUTS.items()}
    rows = measurements[measurements["loinc_code"].isin(by_code) & measurements["value_as_number"].notna()]
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
    return pd.DataFrame({"person_id": rows["person_id"].to_numpy(),
                         "date": pd.to_datetime(rows["measurement_datetime"]).dt.normalize().to_numpy(),
                         "input": rows["loinc_code"].map(by_code).to_numpy(), "value": converted.to_numpy()})


def phenoage(measurements: pd.DataFrame, persons: pd.DataFrame, constant: float = PHENOAGE_CONSTANT) -> pd.DataFrame:
    """PhenoAge per person and date with all nine markers measured that day.

    ``measurements`` is shaped like the ``measurement`` table (person_id, measurement_datetime,
    loinc_code, value_as_number, unit as the lab sent it); ``persons`` like ``person``
    (person_id, year_of_birth). A marker measured twice that day enters as the mean. Returns one
    row per person and date: chronological_age, each input in the formula's unit, ln_crp, xb,
    mortality_score, phenoage, constant and ``missing`` (the inputs absent that day; phenoage
    is empty then, the row is kept). ``attrs`` records the constant and the reference.
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
    wide["date"] = wide["date"].dt.date
    wide.attrs.update(constant=constant, reference="Levine et al. 2018, Aging 10:573")
    return wide


def acceleration(frame: pd.DataFrame, biological: str = "phenoage", chronological: str = "chronological_age") -> pd.Series:
    """Biological-age acceleration: the residual of ``biological`` on ``chronological`` age
    (ordinary least squares over the rows where both are known)."""
    known = frame[[biological, chronological]].dropna()
    if len(known) < 3:
        return pd.Series(np.nan, index=frame.index, name=f"{biological}_accel")
    slope, intercept = np.polyfit(known[chronological], known[biological], 1)
    return (frame[biological] - (intercept + slope * frame[chronological])).rename(f"{biological}_accel")


def kdm_train(reference: pd.DataFrame, markers, age: str = "chronological_age") -> dict:
    """Klemera-Doubal parameters from a reference subset (one row per person-date, a column per
    marker and the age): per marker intercept q, slope k, residual SD s, correlation r with age;
    and s2_BA (the variance of biological around chronological age)."""
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
    """Klemera-Doubal biological age (with the chronological-age term) of each row."""
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
    """How a prediction does in each subgroup: per grouping (sex, race and ethnicity, age band,
    ...) and level, n, the correlation of ``predicted`` with ``target``, the mean difference
    (bias), mean absolute difference and its SD. The overall row comes first, so a model that
    works worse for some people says so."""
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
    """PhenoAge and Klemera-Doubal age against chronological age in the ``biological_age``
    table, by sex at birth, race, ethnicity and age band (:func:`subgroup_performance`), one
    block per model."""
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
