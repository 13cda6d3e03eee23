"""The analyses a site answers, and nothing else: each is a declared type with checked parameters,
computed on the site's own lake and released through its disclosure profile.

============== ===================================================================================
type           what comes back
============== ===================================================================================
attrition      the cohort's attrition, every count disclosure-controlled
table_one      Table 1 by a grouping variable (:func:`explorer.privacy.released_table_one`)
glm            score, information and deviance of a linear or logistic model at the coordinator's
               coefficients (one Newton step of the pooled fit); refused on too few persons per
               coefficient, or when a binary outcome or covariate has a level count in the
               profile's hidden range (the sums would show it)
ageing_rate    a marker's ageing rate (the mixed model of :func:`explorer.ageing.marker_ageing`)
               over the cohort: slope, its standard error, persons and results
heat_response  the distributed-lag coefficients of a wearable outcome on the temperature anomaly
               (linear in the exposure, one coefficient per lag day) and their covariance
============== ===================================================================================

A model's number of persons is exact, and attrition releases the cohort's size, so every model
is also refused when the persons it leaves out (without a value, with too few results) are a
count the profile hides.

Every analysis reads the cohort from one definition (:mod:`explorer.cohorts.definition`, the same
document a researcher writes), and its person-level variables from :data:`VARIABLES`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError, did_you_mean

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

SCHEMA = "explorer.federation/1"
ANALYSES = ("attrition", "table_one", "glm", "ageing_rate", "heat_response")
#: the largest request a site reads: a cohort definition (at most 256 KB itself) and a few coefficients
MAX_REQUEST_BYTES = 256 * 1024
MAX_COVARIATES = 20
MAX_LAG = 21

#: person-level variables a model or Table 1 may name: name -> (description, kind)
VARIABLES = {
    "age": ("age at the index date (years)", "continuous"),
    "female": ("1 if sex at birth is female", "binary"),
    "sex_at_birth": ("sex at birth", "categorical"),
    "race": ("race", "categorical"),
    "ethnicity": ("ethnicity", "categorical"),
    "steps_k": ("median daily steps on valid wear days (thousands)", "continuous"),
    "resting_hr": ("median resting heart rate on valid days (bpm)", "continuous"),
    "sleep_hours": ("median sleep on valid days (hours)", "continuous"),
    "mean_tasmax": ("mean daily maximum temperature at home (°C)", "continuous"),
    "heat_wave_days": ("heat-wave days per year at home", "continuous"),
    "mean_pm25": ("mean PM2.5 at home (µg/m³)", "continuous"),
    "phenoage_accel": ("PhenoAge acceleration, latest at the index date (years)", "continuous"),
}
ICD_PREFIX = re.compile(r"^[A-Z][0-9][0-9A-Z]{0,5}$")


class RequestError(ExplorerError):
    """A request that is not a declared analysis with valid parameters (HTTP 400; 413 when too big)."""

    status = 400


class RequestTooLarge(RequestError):
    status = 413


class Refused(ExplorerError):
    """A request the policy or the disclosure rules do not allow (HTTP 403)."""

    status = 403


@dataclass(frozen=True)
class Request:
    """A checked request: the study it belongs to, the cohort and the analysis."""

    study: str
    analysis: dict
    cohort: object  # explorer.cohorts.Definition
    profile: str | None = None

    @property
    def kind(self) -> str:
        return self.analysis["type"]

    def summary(self) -> dict:
        """What the audit log keeps of it: no coefficients, the rest as sent."""
        shown = {k: v for k, v in self.analysis.items() if k != "beta"}
        return {"study": self.study, "analysis": shown, "cohort": self.cohort.name, "cohort_sha256": self.cohort.sha256,
                "profile": self.profile}


def parse_request(body: bytes | str) -> Request:
    """Check a request document; every problem is named, and nothing runs until all pass."""
    from explorer.cohorts.definition import DefinitionError, from_dict

    if len(body) > MAX_REQUEST_BYTES:
        raise RequestTooLarge(f"request of {len(body):,} bytes; a site reads at most {MAX_REQUEST_BYTES:,} "
                              "(a cohort definition and an analysis fit in far less): nothing was run")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"request is not JSON ({exc}); expected {{schema, study, analysis, cohort}}") from None
    if not isinstance(data, dict):
        raise RequestError("request: a JSON object expected with schema, study, analysis and cohort")
    unknown = sorted(set(data) - {"schema", "study", "analysis", "cohort", "profile"})
    if unknown:
        raise RequestError(f"request: unknown key(s) {unknown}; expected schema, study, analysis, cohort, profile")
    if data.get("schema") != SCHEMA:
        raise RequestError(f"request schema {data.get('schema')!r}; this site speaks {SCHEMA}")
    study = data.get("study")
    if not isinstance(study, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", study):
        raise RequestError(f"request study {study!r}: a name of letters, digits, '.', '_' or '-' expected")
    if not isinstance(data.get("cohort"), dict):
        raise RequestError("request cohort: a cohort definition (mapping) is required")
    try:
        cohort = from_dict(data["cohort"], source="the request's cohort")
    except DefinitionError as exc:
        raise RequestError(str(exc)) from None
    profile = data.get("profile")
    if profile is not None:
        from explorer.privacy.disclosure import PROFILES

        if profile not in PROFILES:
            raise RequestError(f"request profile {profile!r}; expected one of {', '.join(PROFILES)}")
    analysis = check_analysis(data.get("analysis"))
    return Request(study, analysis, cohort, profile)


def check_analysis(analysis) -> dict:
    """The analysis part of a request, checked against its declared parameters."""
    if not isinstance(analysis, dict) or "type" not in analysis:
        raise RequestError(f"request analysis: a mapping with a type expected; types: {', '.join(ANALYSES)}")
    kind = analysis["type"]
    if kind not in ANALYSES:
        raise RequestError(f"analysis type {kind!r} is not declared{did_you_mean(str(kind), ANALYSES)}; a site answers "
                           f"only {', '.join(ANALYSES)} (never code or SQL)")
    allowed = {"attrition": {"type"},
               "table_one": {"type", "by", "continuous", "categorical"},
               "glm": {"type", "family", "outcome", "covariates", "beta"},
               "ageing_rate": {"type", "marker"},
               "heat_response": {"type", "outcome", "max_lag"}}[kind]
    unknown = sorted(set(analysis) - allowed)
    if unknown:
        raise RequestError(f"analysis {kind}: unknown parameter(s) {unknown}; it takes {', '.join(sorted(allowed - {'type'}))}")
    if kind == "table_one":
        by = analysis.get("by", "sex_at_birth")
        _variables([by], "by", kinds=("categorical", "binary"))
        _variables(analysis.get("continuous", []), "continuous", kinds=("continuous",))
        _variables(analysis.get("categorical", []), "categorical", kinds=("categorical", "binary"))
    elif kind == "glm":
        if analysis.get("family") not in ("gaussian", "binomial"):
            raise RequestError(f"glm family {analysis.get('family')!r}; expected gaussian (linear) or binomial (logistic)")
        covariates = analysis.get("covariates", [])
        if not isinstance(covariates, list) or len(covariates) > MAX_COVARIATES:
            raise RequestError(f"glm covariates: a list of at most {MAX_COVARIATES} variables expected")
        _variables(covariates, "covariates", kinds=("continuous", "binary"))
        outcome_name(analysis.get("outcome"))
        beta = analysis.get("beta")
        if beta is not None:
            if (not isinstance(beta, list) or len(beta) != len(covariates) + 1
                    or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in beta)):
                raise RequestError(f"glm beta: {len(covariates) + 1} finite numbers expected (intercept, then each covariate)")
    elif kind == "ageing_rate":
        marker = analysis.get("marker")
        if not isinstance(marker, str) or not re.fullmatch(r"[0-9]{1,7}-[0-9]", marker):
            raise RequestError(f"ageing_rate marker {marker!r}: a LOINC code expected (e.g. 2345-7)")
    elif kind == "heat_response":
        from explorer.analysis.frames import WEARABLE_COLUMNS

        outcome = analysis.get("outcome", "resting_hr")
        if outcome not in WEARABLE_COLUMNS:
            raise RequestError(f"heat_response outcome {outcome!r}; expected one of {sorted(WEARABLE_COLUMNS)}")
        lag = analysis.get("max_lag", 2)
        if not isinstance(lag, int) or isinstance(lag, bool) or not 0 <= lag <= MAX_LAG:
            raise RequestError(f"heat_response max_lag {lag!r}: a whole number of days from 0 to {MAX_LAG} expected")
    return analysis


def outcome_name(outcome) -> str:
    """A GLM outcome: a continuous or binary variable, or ``{condition: [ICD-10 prefixes], name}``
    (1 when any such code is recorded on or after the index date)."""
    if isinstance(outcome, str):
        _variables([outcome], "outcome", kinds=("continuous", "binary"))
        return outcome
    if isinstance(outcome, dict) and set(outcome) <= {"condition", "name"}:
        codes = outcome.get("condition")
        if (isinstance(codes, list) and 0 < len(codes) <= 20
                and all(isinstance(c, str) and ICD_PREFIX.fullmatch(c.replace(".", "").upper()) for c in codes)):
            name = outcome.get("name") or "condition " + ",".join(codes)
            return str(name)
    if isinstance(outcome, dict) and set(outcome) <= {"variable", "above", "below", "name"} and "variable" in outcome:
        _variables([outcome["variable"]], "outcome", kinds=("continuous",))
        bounds = [outcome.get(k) for k in ("above", "below") if outcome.get(k) is not None]
        if len(bounds) == 1 and isinstance(bounds[0], (int, float)) and math.isfinite(bounds[0]):
            side = "above" if outcome.get("above") is not None else "below"
            return str(outcome.get("name") or f"{outcome['variable']} {'>' if side == 'above' else '<'} {bounds[0]:g}")
    raise RequestError(f"glm outcome {outcome!r}: a variable ({', '.join(VARIABLES)}), "
                       "{condition: [ICD-10-CM code prefixes], name: ...} or {variable: V, above|below: X, name: ...} expected")


def outcome_values(data, request, outcome) -> pd.Series:
    """The outcome of each cohort member: a variable, 1/0 for a condition after the index date, or
    1/0 for a variable above (or below) a threshold (missing where the variable is)."""
    persons = data.persons(request)
    if isinstance(outcome, str):
        return persons[outcome].astype(float)
    if "condition" in outcome:
        return data.condition_after_index(request, outcome["condition"])
    values = persons[outcome["variable"]].astype(float)
    hit = values > outcome["above"] if outcome.get("above") is not None else values < outcome["below"]
    return hit.astype(float).where(values.notna())


def _variables(names, where: str, kinds) -> None:
    if not isinstance(names, list) and not isinstance(names, str):
        raise RequestError(f"{where}: a list of variables expected")
    for name in [names] if isinstance(names, str) else names:
        if name not in VARIABLES:
            raise RequestError(f"{where}: variable {name!r} is not declared{did_you_mean(str(name), VARIABLES)}; "
                               f"declared: {', '.join(VARIABLES)}")
        if VARIABLES[name][1] not in kinds:
            raise RequestError(f"{where}: {name} is {VARIABLES[name][1]}; expected {' or '.join(kinds)}")


# ----------------------------------------------------------------------- computing at the site
class SiteData:
    """A site's lake, with what repeated requests of one study share: the table versions pinned
    at the study's first request (every later request, each Newton step, sees the same data) and
    the person rows of each cohort."""

    def __init__(self, lake: Lake):
        self.lake = lake
        self.pins: dict[str, dict] = {}
        self._persons: dict[tuple, pd.DataFrame] = {}

    def versions(self, study: str) -> dict:
        if study not in self.pins:
            self.pins[study] = {t: int(self.lake.version(t)) for t in self.lake.tables()}
        return self.pins[study]

    def members(self, request: Request) -> pd.DataFrame:
        from explorer.cohorts import members

        return members(self.lake, request.cohort, versions=self.versions(request.study))

    def persons(self, request: Request) -> pd.DataFrame:
        """One row per cohort member with every variable of :data:`VARIABLES` the lake holds."""
        from explorer.cohorts import person_features

        key = (request.study, request.cohort.sha256)
        if key not in self._persons:
            members = self.members(request)
            groups = members.assign(group="cohort")[["person_id", "index_date", "group"]]
            features = person_features(self.lake, groups, versions=self.versions(request.study))
            rows = pd.DataFrame({"person_id": features["person_id"], "index_date": members.set_index("person_id")
                                 .loc[features["person_id"], "index_date"].to_numpy()})
            rows["age"] = pd.to_numeric(features["age"], errors="coerce")
            for column in ("sex_at_birth", "race", "ethnicity"):
                rows[column] = features[column].astype(object)
            rows["female"] = (features["sex_at_birth"] == "female").astype(float)
            for name, source, scale in (("steps_k", "median_steps", 1000), ("resting_hr", "median_resting_hr", 1),
                                        ("sleep_hours", "median_sleep_minutes", 60), ("mean_tasmax", "mean_tasmax", 1),
                                        ("heat_wave_days", "heat_wave_days_per_year", 1), ("mean_pm25", "mean_pm25", 1),
                                        ("phenoage_accel", "phenoage_accel", 1)):
                rows[name] = pd.to_numeric(features[source], errors="coerce") / scale if source in features else np.nan
            self._persons[key] = rows.reset_index(drop=True)
        return self._persons[key]

    def condition_after_index(self, request: Request, codes) -> pd.Series:
        """1.0 for members with any of ``codes`` (ICD-10-CM prefixes) on or after their index date."""
        persons = self.persons(request)
        if not self.lake.has_table("condition_occurrence"):
            return pd.Series(0.0, index=persons.index)
        prefixes = [c.replace(".", "").upper() for c in codes]
        where = " OR ".join(["starts_with(replace(upper(code), '.', ''), ?)"] * len(prefixes))
        rows = self.lake.sql(f"SELECT person_id, min(condition_start_date) AS first FROM condition_occurrence "
                             f"WHERE code_system = 'http://hl7.org/fhir/sid/icd-10-cm' AND ({where}) GROUP BY person_id",
                             prefixes, versions=self.versions(request.study))
        first = persons["person_id"].map(dict(zip(rows["person_id"], pd.to_datetime(rows["first"]))))
        return (pd.to_datetime(first) >= pd.to_datetime(persons["index_date"])).astype(float)


@dataclass(frozen=True)
class PrivateRelease:
    """Differential privacy for a study's counts: each release charges ``epsilon`` to the site's
    budget (dataset ``federation``, release = the study)."""

    epsilon: float
    user: str


def compute(data: SiteData, request: Request, *, profile: str, min_persons_per_parameter: int,
            private: PrivateRelease | None = None) -> dict:
    """Run ``request`` on the site's lake and return what it may release (JSON-ready).

    Raises
    ------
    Refused
        When the disclosure rules do not allow the result (too few persons, a small level count).
    explorer.privacy.dp.BudgetExceeded
        A differentially private release the study's budget cannot pay for.
    """
    from explorer.privacy.disclosure import DisclosureControl

    control = DisclosureControl(profile=profile)
    kind = request.kind
    if kind == "attrition" and private is not None:
        return {"attrition": json_records(_private_attrition(data, request, private))}
    if kind == "attrition":
        from explorer.cohorts import count

        table = count(data.lake, request.cohort, versions=data.versions(request.study), disclosure=control)
        keep = ["step", "label", "persons", "persons_shown", "persons_status", "removed", "removed_shown", "removed_status"]
        return {"attrition": json_records(table[[c for c in keep if c in table]])}
    if kind == "table_one":
        return _table_one(data, request, control)
    if kind == "glm":
        return _glm(data, request, control, min_persons_per_parameter)
    if kind == "ageing_rate":
        return _ageing_rate(data, request, control, min_persons_per_parameter)
    return _heat_response(data, request, control, min_persons_per_parameter)


def _private_attrition(data: SiteData, request: Request, private: PrivateRelease) -> pd.DataFrame:
    """Attrition with differential privacy: every person in the lake is counted once, in the step
    that removes them or in "remaining" (disjoint groups, fixed by the definition before the data is
    read), those counts get discrete Laplace noise (:func:`explorer.privacy.dp.dp_counts`), and the
    persons remaining after each step are sums of the noisy counts (post-processing: no further
    privacy loss), so they never rise from one step to the next."""
    from explorer.cohorts import count
    from explorer.privacy.dp import PrivacyBudget, dp_counts

    exact = count(data.lake, request.cohort, versions=data.versions(request.study))
    remaining = exact["persons"].astype(int).to_numpy()
    groups = [f"removed at step {k}" for k in range(1, len(remaining))] + ["remaining"]
    true = pd.Series(np.r_[remaining[:-1] - remaining[1:], remaining[-1]], index=pd.Index(groups, name="group"))
    released = dp_counts(true, epsilon=private.epsilon, budget=PrivacyBudget(data.lake), dataset="federation",
                         release=request.study, user=private.user, groups=groups)
    noisy = released.set_index("group")["count"].to_numpy()
    persons = noisy[::-1].cumsum()[::-1]  # remaining after step k: removed later, or never
    removed = np.r_[np.nan, noisy[:-1]]
    return pd.DataFrame({"step": exact["step"], "label": exact["label"], "persons": persons.astype(float),
                         "persons_shown": [f"≈{v:,.0f}" for v in persons], "persons_status": "dp",
                         "removed": removed, "removed_shown": [""] + [f"≈{v:,.0f}" for v in removed[1:]],
                         "removed_status": "dp", "epsilon": private.epsilon,
                         # each removed count is within this of the truth with 95% probability
                         "accuracy": float(released["accuracy"].iloc[0])})


def _refuse_small_complement(data: SiteData, request: Request, used: int, rules, what: str) -> None:
    """A model's number of persons is exact (the intercept's information is a count) and the cohort's
    size is released by attrition: the persons left out (no value of a variable, too few results)
    must not be a count the profile hides, or their difference would give it away."""
    left_out = len(data.members(request)) - used
    if rules.hides(left_out):
        raise Refused(f"{what}: the persons it would leave out of the cohort (those without every value) are a count "
                      f"this site's profile ({rules.title}) hides, and the cohort's size beside the model's would show "
                      "it; nothing was released. Drop the variable with the missing values, or narrow the cohort to "
                      "persons who have it")


def _table_one(data: SiteData, request: Request, control) -> dict:
    from explorer.privacy.table_one import released_table_one

    spec = request.analysis
    by = spec.get("by", "sex_at_birth")
    persons = data.persons(request).copy()
    persons[by] = persons[by].astype(object).where(persons[by].notna(), "unknown").astype(str)
    table = released_table_one(persons, by, continuous=spec.get("continuous", []), categorical=spec.get("categorical", []),
                               control=control)
    groups = sorted(persons[by].unique())
    return {"by": by, "groups": groups, "table": json_records(table)}


def _glm(data: SiteData, request: Request, control, min_per_parameter: int) -> dict:
    from explorer.analysis.regression import glm_sums

    spec = request.analysis
    persons = data.persons(request)
    covariates = list(spec.get("covariates", []))
    outcome = spec["outcome"]
    y = outcome_values(data, request, outcome)
    X = persons[covariates].astype(float)
    complete = X.notna().all(axis=1) & y.notna()
    X, y = X[complete], y[complete]
    names = ["intercept", *covariates]
    p, n = len(names), int(complete.sum())
    rules = control.rules
    if n < min_per_parameter * p or n <= rules.largest_hidden:
        raise Refused(f"glm on too few persons ({n} with every variable): this site's policy needs at "
                      f"least {min_per_parameter} persons per coefficient ({min_per_parameter * p} for {p}) "
                      f"and more than {rules.largest_hidden}; nothing was released")
    binaries = {outcome_name(outcome): y} if spec["family"] == "binomial" else {}
    binaries.update({c: X[c] for c in covariates if VARIABLES[c][1] == "binary"})
    for name, values in binaries.items():
        ones = int((values == 1).sum())
        if not set(np.unique(values)) <= {0.0, 1.0}:
            raise Refused(f"glm: {name} is not 0/1 at this site")
        for level, count in (("1", ones), ("0", n - ones)):
            if rules.hides(count):
                raise Refused(f"glm: {name} = {level} for a count this site's profile ({rules.title}) hides; "
                              "the model's sums would show it, so nothing was released")
    _refuse_small_complement(data, request, n, rules, "glm")
    beta = np.asarray(spec.get("beta") or np.zeros(p), dtype=float)
    sums = glm_sums(np.column_stack([np.ones(n), X.to_numpy()]), y.to_numpy(), beta, spec["family"])
    return {"names": names, "gradient": sums.gradient.tolist(), "information": sums.information.tolist(),
            "deviance": sums.deviance, "n": sums.n}


def _ageing_rate(data: SiteData, request: Request, control, min_per_parameter: int) -> dict:
    from explorer.ageing import marker_ageing, marker_pathways

    marker = request.analysis["marker"]
    reference = marker_pathways()
    if marker not in reference.index:
        raise Refused(f"ageing_rate: marker {marker} is not in the marker reference; fitted markers: "
                      f"{', '.join(reference.index[:12])}, ...")
    members = data.members(request)
    versions = data.versions(request.study)
    measurements = data.lake.sql("SELECT person_id, measurement_datetime, loinc_code, value_si FROM measurement "
                                 "WHERE loinc_code = ? AND value_si IS NOT NULL", [marker], versions=versions)
    measurements = measurements[measurements["person_id"].isin(members["person_id"])]
    persons = data.lake.sql("SELECT person_id, year_of_birth FROM person", versions=versions)
    fitted, _ = marker_ageing(measurements, persons[persons["person_id"].isin(members["person_id"])],
                              markers=reference.loc[[marker]])
    if fitted.empty:
        raise Refused(f"ageing_rate: marker {marker} could not be fitted at this site (too few repeated results)")
    row = fitted.iloc[0]
    if int(row["n_persons"]) <= control.rules.largest_hidden or int(row["n_persons"]) < 2 * min_per_parameter:
        raise Refused(f"ageing_rate: {marker} measured repeatedly in too few persons for this site's policy; nothing released")
    _refuse_small_complement(data, request, int(row["n_persons"]), control.rules, f"ageing_rate of {marker}")
    return {"marker": marker, "name": str(row["name"]), "scale": str(reference.at[marker, "scale"]),
            "estimate": [float(row["slope"])], "covariance": [[float(row["slope_se"]) ** 2]], "names": ["slope per year"],
            "n_persons": int(row["n_persons"]), "n_obs": int(row["n_obs"])}


def _heat_response(data: SiteData, request: Request, control, min_per_parameter: int) -> dict:
    from explorer.analysis import dlnm, splines
    from explorer.analysis.frames import person_day_frame

    outcome = request.analysis.get("outcome", "resting_hr")
    max_lag = int(request.analysis.get("max_lag", 2))
    members = data.members(request)
    study = person_day_frame(data.lake, outcome, "tas_anomaly", versions=data.versions(request.study))
    frame = study.frame[study.frame["person_id"].isin(members["person_id"])]
    persons = int(frame.loc[frame[outcome].notna(), "person_id"].nunique())
    if persons <= control.rules.largest_hidden or persons < min_per_parameter * (max_lag + 1):
        raise Refused(f"heat_response on {persons} persons: this site's policy needs more than {control.rules.largest_hidden} "
                      f"and {min_per_parameter} per coefficient; nothing released")
    _refuse_small_complement(data, request, persons, control.rules, "heat_response")
    crossbasis = dlnm.CrossBasis(splines.linear(), splines.integer(range(max_lag + 1)), max_lag)
    fit = dlnm.fit_person_days(frame, outcome, "tas_anomaly", crossbasis)
    return {"outcome": outcome, "exposure": "tas_anomaly", "names": [f"lag {k}" for k in range(max_lag + 1)],
            "estimate": [float(v) for v in fit.coef], "covariance": np.asarray(fit.vcov, dtype=float).tolist(),
            "n_persons": int(fit.model.n_groups), "n_obs": int(fit.model.n_obs)}


def json_records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows of a frame: NaN and NA become null, numpy scalars Python ones."""
    out = frame.astype(object).where(frame.notna(), None)
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()} for row in out.to_dict("records")]
