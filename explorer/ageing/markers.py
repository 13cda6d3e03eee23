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
    """The reference table of ageing markers, read from the catalog.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``loinc_code``: ``name``, ``pathway`` (metabolic, immune, hepatic,
        nephrotic, or empty: fitted but in no pathway) and ``scale`` ("linear", or "log": the
        marker's natural logarithm is fitted). Read once from
        ``data_catalog/reference/marker_pathways.yaml``.

    Raises
    ------
    explorer.errors.ExplorerError
        The file cannot be read or a scale is neither linear nor log.

    References
    ----------
    Ahadi S, Zhou W, Schüssler-Fiorenza Rose SM, et al. Personal aging markers and ageotypes
    revealed by deep longitudinal profiling. Nat Med. 2020;26:83-90.

    Examples
    --------
    >>> from explorer.ageing import marker_pathways
    >>> marker_pathways().loc["1751-7"].to_dict()
    {'name': 'Albumin', 'pathway': 'hepatic', 'scale': 'linear'}
    """
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
    """Age in years at each measurement, from the year of birth.

    Parameters
    ----------
    measurements : pandas.DataFrame
        person_id, measurement_datetime.
    persons : pandas.DataFrame
        person_id, year_of_birth.

    Returns
    -------
    pandas.Series
        Age in years (float), on the index of ``measurements``; NaN without a year of birth.

    Notes
    -----
    Only the year of birth is kept, so a person is taken as born mid-year, on 1 July:
    ``age = (measurement_datetime - <year_of_birth>-07-01) / 365.25 days``.

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.ageing import ages
    >>> measurements = pd.DataFrame({"person_id": ["a", "a"],
    ...                              "measurement_datetime": pd.to_datetime(["2020-07-01", "2021-01-01"])})
    >>> ages(measurements, pd.DataFrame({"person_id": ["a"], "year_of_birth": [1970]})).round(2).tolist()
    [50.0, 50.51]
    """
    born = measurements[["person_id"]].merge(persons[["person_id", "year_of_birth"]], on="person_id", how="left")
    birthday = pd.to_datetime(born["year_of_birth"].astype("Int64").astype(str) + "-07-01", errors="coerce")
    when = pd.to_datetime(measurements["measurement_datetime"]).to_numpy()
    return pd.Series((when - birthday.to_numpy()) / np.timedelta64(1, "D") / DAYS_PER_YEAR, index=measurements.index)


def marker_ageing(measurements: pd.DataFrame, persons: pd.DataFrame, *, reml: bool = True,
                  markers: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which markers change with age, and how fast each person changes: per marker and per
    person-marker ageing.

    Parameters
    ----------
    measurements : pandas.DataFrame
        Shaped like ``measurement``: person_id, measurement_datetime, loinc_code, value_si (the
        marker in its SI unit).
    persons : pandas.DataFrame
        Shaped like ``person``: person_id, year_of_birth.
    reml : bool, default True
        REML (True) or ML fits (:func:`explorer.ageing.ageing_rates`).
    markers : pandas.DataFrame, optional
        The reference table (:func:`marker_pathways`, the default): the markers fitted and the
        scale of each.

    Returns
    -------
    markers : pandas.DataFrame
        One row per fitted marker: marker, name, scale, n_persons, n_obs, intercept (at age 0),
        slope (per year, in the SI unit, or in log units a year for a log-scale marker),
        slope_se, p_value (two-sided Wald), q_value (Benjamini-Hochberg across markers),
        intercept_sd, slope_sd (SDs of the person effects), corr, residual_sd, converged,
        n_censored (results that entered at a censoring limit: ``value_comparator`` set). A
        marker that cannot be fitted (e.g. measured once per person) is left out and named in
        ``attrs["skipped"]``.
    persons : pandas.DataFrame
        person_id, marker, slope (per year), intercept (at age 0), both fixed plus random, and
        n_obs, for persons with at least :data:`MIN_VISITS` results of the marker.

    Notes
    -----
    Per marker, on its scale (:math:`y` or :math:`\\ln y`), with age :math:`a` from :func:`ages`:

    .. math:: y_{ij} = \\beta_0 + \\beta_1 a_{ij} + b_{0i} + b_{1i} a_{ij} + \\varepsilon_{ij}

    fitted by :func:`explorer.ageing.ageing_rates`. With the :math:`m` p-values sorted,
    :math:`p_{(1)} \\le \\dots \\le p_{(m)}`, the q-value is
    :math:`q_{(k)} = \\min_{j \\ge k} \\min(1, m\\,p_{(j)} / j)` (Benjamini-Hochberg, as
    ``statsmodels.stats.multitest.multipletests(method="fdr_bh")``).

    References
    ----------
    Ahadi S, Zhou W, Schüssler-Fiorenza Rose SM, et al. Personal aging markers and ageotypes
    revealed by deep longitudinal profiling. Nat Med. 2020;26:83-90.
    Benjamini Y, Hochberg Y. Controlling the false discovery rate: a practical and powerful
    approach to multiple testing. J R Stat Soc B. 1995;57:289-300.

    Examples
    --------
    Thirty persons, five yearly visits: glucose rising 0.05 mmol/L and albumin falling 0.2 g/L a
    year:

    >>> import numpy as np, pandas as pd
    >>> from explorer.ageing import marker_ageing
    >>> rng = np.random.default_rng(0)
    >>> persons = pd.DataFrame({"person_id": [f"p{i:02d}" for i in range(30)],
    ...                         "year_of_birth": rng.integers(1950, 1970, 30)})
    >>> visits = pd.DataFrame({"person_id": np.repeat(persons["person_id"], 5).to_numpy(),
    ...                        "measurement_datetime": np.tile(pd.date_range("2015-03-01", periods=5, freq="365D"), 30)})
    >>> years = np.tile(np.arange(5.0), 30)
    >>> glucose = visits.assign(loinc_code="2345-7", value_si=5 + np.repeat(rng.normal(0, 0.5, 30), 5)
    ...                         + 0.05 * years + rng.normal(0, 0.1, 150))
    >>> albumin = visits.assign(loinc_code="1751-7", value_si=44 + np.repeat(rng.normal(0, 2, 30), 5)
    ...                         - 0.2 * years + rng.normal(0, 0.5, 150))
    >>> table, rates = marker_ageing(pd.concat([glucose, albumin]), persons)
    >>> table[["marker", "name", "n_persons", "n_obs", "slope"]].round(2)
       marker     name  n_persons  n_obs  slope
    0  1751-7  Albumin         30    150  -0.19
    1  2345-7  Glucose         30    150   0.05
    >>> bool((table["q_value"] < 0.05).all()), len(rates)
    (True, 60)
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
        # a censored result (value_comparator, e.g. CRP <0.5) enters at its limit; the marker says how many did
        censored = rows["value_comparator"].notna() if "value_comparator" in rows else pd.Series(False, index=rows.index)
        data = pd.DataFrame({"person_id": rows["person_id"], "age": rows["age"], "value": values,
                             "censored": censored.astype(bool)}).dropna()
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
            "residual_sd": np.sqrt(fit.variance["residual"]), "converged": fit.converged,
            "n_censored": int(data["censored"].sum())})
        own = fit.per_group[fit.per_group["n_obs"] >= MIN_VISITS]
        person_rows.append(pd.DataFrame({"person_id": own.index.astype(str), "marker": code,
                                         "slope": own["slope"].to_numpy(), "intercept": own["intercept"].to_numpy(),
                                         "n_obs": own["n_obs"].to_numpy()}))
    columns = ["marker", "name", "scale", "n_persons", "n_obs", "intercept", "slope", "slope_se", "p_value", "q_value",
               "intercept_sd", "slope_sd", "corr", "residual_sd", "converged", "n_censored"]
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
    """Pathway ageing scores: how much faster than the cohort each person ages along each pathway.

    Parameters
    ----------
    person_rates : pandas.DataFrame
        The persons table of :func:`marker_ageing`: person_id, marker, slope.
    marker_table : pandas.DataFrame
        The markers table of :func:`marker_ageing`: marker, slope, slope_sd.
    markers : pandas.DataFrame, optional
        The reference table with each marker's pathway (default :func:`marker_pathways`).

    Returns
    -------
    pandas.DataFrame
        Indexed by person_id, one column per pathway: the score, in standard deviations of
        personal slopes (dimensionless); positive is ageing faster than the cohort. A person
        lacking any of a pathway's markers has no score for it (NaN).

    Notes
    -----
    For person :math:`i` and pathway :math:`P` of markers :math:`j`, with :math:`b_{ij}` the
    person's slope, :math:`\\beta_j` the cohort's and :math:`\\sigma_j` the model's SD of
    personal slopes (``slope_sd``),

    .. math:: S_{iP} = \\frac{1}{|P|} \\sum_{j \\in P}
              \\operatorname{sign}(\\beta_j)\\,\\frac{b_{ij} - \\beta_j}{\\sigma_j}

    so a falling marker (albumin) falling faster counts as ageing faster.

    References
    ----------
    Ahadi S, et al. Nat Med. 2020;26:83-90.

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.ageing import pathway_scores
    >>> reference = pd.DataFrame({"name": ["A", "B"], "pathway": ["x", "x"], "scale": "linear"},
    ...                          index=pd.Index(["A", "B"], name="loinc_code"))
    >>> fitted = pd.DataFrame({"marker": ["A", "B"], "slope": [0.5, -0.2], "slope_sd": [0.1, 0.05]})
    >>> rates = pd.DataFrame({"person_id": ["p1", "p1", "p2", "p2", "p3"], "marker": ["A", "B", "A", "B", "A"],
    ...                       "slope": [0.7, -0.3, 0.5, -0.2, 0.9]})
    >>> pathway_scores(rates, fitted, markers=reference).round(6)   # p1: 2 SDs faster on both
                 x
    person_id
    p1         2.0
    p2         0.0
    p3         NaN
    """
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
    """Ageotypes: the pathways along which each person ages fast or slow.

    Parameters
    ----------
    scores : pandas.DataFrame
        :func:`pathway_scores`: persons (index) by pathways; persons without a score in every
        pathway are left out.
    threshold : float, default 1.0
        Standard deviations from the pathway's mean that make a person "fast" or "slow".
    clusters : int, optional
        Number of k-means clusters (default: the number of pathways).
    seed : int, default 0
        Seed of k-means.

    Returns
    -------
    pandas.DataFrame
        Per person: one column per pathway, "fast", "slow" or "typical"; ``ageotype``, the
        pathway with the highest score; ``fast_pathways``, every pathway where the person is
        fast ("+"-joined, empty if none); and ``cluster`` ("c0", "c1", ...: k-means on the
        scores, scikit-learn).

    Raises
    ------
    explorer.errors.ExplorerError
        Fewer than 2 persons with a score in every pathway.

    Notes
    -----
    A person is fast on pathway :math:`P` when
    :math:`(S_{iP} - \\bar{S}_P) / \\mathrm{sd}(S_P) \\ge` ``threshold`` (the spread of that
    pathway's scores: a mean of several markers varies less than one marker), slow when
    :math:`\\le -`\\ ``threshold``.

    References
    ----------
    Ahadi S, et al. Nat Med. 2020;26:83-90.

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.ageing import ageotypes
    >>> scores = pd.DataFrame({"metabolic": [2.0, 0.1, -0.2, 0.0, -1.9], "immune": [0.1, 1.8, 0.0, -0.1, 0.2]},
    ...                       index=pd.Index(["p1", "p2", "p3", "p4", "p5"], name="person_id"))
    >>> found = ageotypes(scores, clusters=3)
    >>> found.drop(columns="cluster")
              metabolic   immune   ageotype fast_pathways
    person_id
    p1             fast  typical  metabolic     metabolic
    p2          typical     fast     immune        immune
    p3          typical  typical     immune
    p4          typical  typical  metabolic
    p5             slow  typical     immune
    >>> found["cluster"].nunique()
    3
    """
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
