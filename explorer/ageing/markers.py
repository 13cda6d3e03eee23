"""Which markers change with age, how fast each person changes, and the ageotypes.

- :func:`marker_ageing`: per marker, ``value ~ age + (1 + age | person)`` by REML
  (:func:`explorer.ageing.ageing_rates`), the fixed slope per year with its standard error,
  Wald p-value and Benjamini-Hochberg q-value across markers; and each person's own line.
- :func:`ageotypes`: a person's pathway ageing score is the mean over the pathway's markers of
  the person's slope, standardised by the model's SD of personal slopes and signed so that
  positive means changing
  in the direction the cohort ages (a falling marker such as albumin counts falling faster as
  ageing faster). A pathway is "fast" for a person whose score is at least ``threshold``
  standard deviations, "slow" at most minus that; the ageotype is the pathway with the highest
  score; ``cluster`` is a k-means clustering of the scores.

The markers, their pathways and scales are data: ``data_catalog/reference/marker_pathways.yaml``.

References
----------
Ahadi S, Zhou W, Schüssler-Fiorenza Rose SM, et al. Personal aging markers and ageotypes
revealed by deep longitudinal profiling. Nat Med. 2020;26:83-90.
Benjamini Y, Hochberg Y. Controlling the false discovery rate. J R Stat Soc B. 1995;57:289-300.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

#: a person needs this many visits of a marker for their own line to be reported
MIN_VISITS = 2
DAYS_PER_YEAR = 365.25


@lru_cache(maxsize=1)
def marker_pathways() -> pd.DataFrame:
    """The reference table of ageing markers: loinc_code (index), name, pathway, scale."""
    import yaml

    from explorer.catalog.entries import default_catalog_dir

    path = Path(default_catalog_dir()) / "reference" / "marker_pathways.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        rows = {str(code): entry for code, entry in document["markers"].items()}
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise ExplorerError(f"{path}: cannot read the marker pathways ({exc}); expected a 'markers:' mapping of "
                            "LOINC code -> {name, pathway, scale}") from None
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "loinc_code"
    bad = table[~table["scale"].isin(["linear", "log"])]
    if len(bad):
        raise ExplorerError(f"{path}: marker {bad.index[0]} has scale {bad['scale'].iloc[0]!r}; expected linear or log")
    return table


def ages(measurements: pd.DataFrame, persons: pd.DataFrame) -> pd.Series:
    """Age in years at each measurement, from the year of birth (born mid-year: 1 July, the
    middle of the year, as only the year is kept)."""
    born = measurements[["person_id"]].merge(persons[["person_id", "year_of_birth"]], on="person_id", how="left")
    birthday = pd.to_datetime(born["year_of_birth"].astype("Int64").astype(str) + "-07-01", errors="coerce")
    when = pd.to_datetime(measurements["measurement_datetime"]).to_numpy()
    return pd.Series((when - birthday.to_numpy()) / np.timedelta64(1, "D") / DAYS_PER_YEAR, index=measurements.index)


def marker_ageing(measurements: pd.DataFrame, persons: pd.DataFrame, *, reml: bool = True,
                  markers: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per marker and per person-marker ageing, from frames shaped like ``measurement``
    (person_id, measurement_datetime, loinc_code, value_si) and ``person`` (person_id,
    year_of_birth). Returns (markers, persons):

    - markers: marker, name, scale, n_persons, n_obs, intercept (at age 0), slope (per year, on
      the marker's scale; a marker that cannot be fitted, e.g. measured once per person, is left
      out and named in ``attrs["skipped"]``),
      slope_se, p_value, q_value, intercept_sd, slope_sd, corr, residual_sd, converged;
    - persons: person_id, marker, slope, intercept (at age 0, fixed plus random), n_obs, for
      persons with at least :data:`MIN_VISITS` results of the marker.
    """
    from statsmodels.stats.multitest import multipletests

    from explorer.ageing.mixed import ageing_rates

    reference = marker_pathways() if markers is None else markers
    needed = [c for c in ("person_id", "measurement_datetime", "loinc_code", "value_si") if c not in measurements]
    if needed:
        raise ExplorerError(f"measurements: column(s) {', '.join(needed)} missing")
    frame = measurements[measurements["loinc_code"].isin(reference.index)].copy()
    frame["age"] = ages(frame, persons)
    marker_rows, person_rows, skipped = [], [], []
    for code, rows in frame.groupby("loinc_code", sort=True):
        scale = reference.loc[code, "scale"]
        values = rows["value_si"].astype(float)
        if scale == "log":
            values = np.log(values.where(values > 0))
        data = pd.DataFrame({"person_id": rows["person_id"], "age": rows["age"], "value": values}).dropna()
        try:
            fit = ageing_rates(data, "value", "age", "person_id", reml=reml)
        except ExplorerError as problem:  # cross-sectional or too few: reported, not fitted
            skipped.append(f"{code}: {problem}")
            continue
        marker_rows.append({
            "marker": code, "name": reference.loc[code, "name"], "scale": scale, "n_persons": fit.n_groups,
            "n_obs": fit.n_obs, "intercept": fit.fixed["intercept"], "slope": fit.fixed["slope"],
            "slope_se": fit.fixed_se["slope"],
            "p_value": fit.slope_p_value, "intercept_sd": np.sqrt(fit.variance["intercept"]),
            "slope_sd": np.sqrt(fit.variance["slope"]), "corr": fit.variance["corr"],
            "residual_sd": np.sqrt(fit.variance["residual"]), "converged": fit.converged})
        own = fit.per_group[fit.per_group["n_obs"] >= MIN_VISITS]
        person_rows.append(pd.DataFrame({"person_id": own.index.astype(str), "marker": code,
                                         "slope": own["slope"].to_numpy(), "intercept": own["intercept"].to_numpy(),
                                         "n_obs": own["n_obs"].to_numpy()}))
    columns = ["marker", "name", "scale", "n_persons", "n_obs", "intercept", "slope", "slope_se", "p_value", "q_value",
               "intercept_sd", "slope_sd", "corr", "residual_sd", "converged"]
    marker_table = pd.DataFrame(marker_rows, columns=[c for c in columns if c != "q_value"])
    marker_table["q_value"] = np.nan
    finite = np.isfinite(marker_table["p_value"].to_numpy(dtype=float))
    if finite.any():  # a marker without a p-value takes no part in the correction
        marker_table.loc[finite, "q_value"] = multipletests(marker_table.loc[finite, "p_value"], method="fdr_bh")[1]
    marker_table.attrs["skipped"] = skipped
    person_table = (pd.concat(person_rows, ignore_index=True) if person_rows else
                    pd.DataFrame(columns=["person_id", "marker", "slope", "intercept", "n_obs"]))
    return marker_table[columns], person_table


def pathway_scores(person_rates: pd.DataFrame, marker_table: pd.DataFrame,
                   markers: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per person (index) and pathway (columns): the mean over the pathway's markers of the
    person's slope less the cohort's, in units of the model's SD of personal slopes, signed by
    the direction the cohort ages. A person lacking any of a pathway's markers has no score for
    it."""
    reference = marker_pathways() if markers is None else markers
    fitted = marker_table.set_index("marker")
    direction = np.sign(fitted["slope"]).replace(0, 1.0)
    rates = person_rates[person_rates["marker"].isin(reference.index[reference["pathway"].notna()])]
    wide = rates.pivot_table(index="person_id", columns="marker", values="slope")
    # against the model's own spread of slopes: a person whose slope is poorly measured keeps a
    # shrunken (near 0) score instead of having the noise of a poorly resolved marker inflated
    spread = fitted["slope_sd"].reindex(wide.columns).replace(0, np.nan)
    standardised = (wide - fitted["slope"].reindex(wide.columns)) / spread
    standardised = standardised * direction.reindex(standardised.columns).to_numpy()
    pathway_of = reference["pathway"].reindex(standardised.columns)
    # every marker of the pathway needed: a mean over what is there would score on one marker
    return standardised.T.groupby(pathway_of.to_numpy()).apply(lambda block: block.mean(skipna=False)).T


def ageotypes(scores: pd.DataFrame, *, threshold: float = 1.0, clusters: int | None = None,
              seed: int = 0) -> pd.DataFrame:
    """Per person: one column per pathway, "fast" where the person's score is at least
    ``threshold`` standard deviations of that pathway's scores above their mean, "slow" at least
    that far below, "typical" otherwise;
    ``ageotype``, the pathway with the highest score; ``fast_pathways``, every pathway where
    the person stands out ("+"-joined, empty if none); and ``cluster`` (k-means on the scores,
    scikit-learn; ``clusters`` defaults to the number of pathways)."""
    from sklearn.cluster import KMeans

    complete = scores.dropna()
    if len(complete) < 2:
        raise ExplorerError(f"ageotypes: {len(complete)} person(s) with a score in every pathway; at least 2 needed "
                            "(each needs results of every pathway's markers at two visits or more)")
    out = pd.DataFrame(index=complete.index)
    # standing out is judged on each pathway's own spread: a mean of k markers varies less than
    # one marker, and would otherwise seldom reach the threshold
    standout = (complete - complete.mean()) / complete.std(ddof=1)
    for pathway in complete.columns:
        out[pathway] = np.where(standout[pathway] >= threshold, "fast",
                                np.where(standout[pathway] <= -threshold, "slow", "typical"))
    # the dominant pathway: whose markers' slopes stand out most, in units of their own spread
    out["ageotype"] = complete.idxmax(axis=1)
    fast = standout.ge(threshold)
    out["fast_pathways"] = ["+".join(complete.columns[row]) for row in fast.to_numpy()]
    k = min(clusters or complete.shape[1], len(complete))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(complete.to_numpy())
    out["cluster"] = [f"c{label}" for label in labels]
    return out
