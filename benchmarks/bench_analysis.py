"""Epidemiological analyses (issue 25): a distributed-lag non-linear model of person-day outcomes and
Cox regression with time-varying covariates, each against the straightforward implementation
measured in the same run.

- DLNM: 2,000 persons x 365 days of a daily outcome on a daily exposure, lags 0-21, a natural-spline
  cross-basis (3 x 4 df), a random intercept per person and a fixed effect per day, by REML from
  sufficient statistics (``explorer.analysis.dlnm.fit_person_days``). Target: at most 30 s. The
  baseline is statsmodels' ``MixedLM`` on the same design with the day indicators as columns, timed
  where it can run (100 persons x 365 days), the coefficients checked to agree first.
- Cox: 100,000 persons x 12 monthly intervals (start/stop rows, one time-varying covariate and a
  fixed one), Efron ties, robust SEs by person (``explorer.analysis.survival.cox``). Target: at most
  30 s. The baseline is Newton-Raphson on the Breslow partial likelihood with the risk set recomputed
  at each event time (what one writes from the textbook), timed at 10,000 persons.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from benchmarks.harness import Result, benchmark


def person_days(persons: int, days: int = 365, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-01", periods=days)
    common = np.cumsum(rng.normal(0, 1, days)) * 0.3
    exposure = common[None, :] + rng.normal(0, 2, (persons, 1)) + rng.normal(0, 1.5, (persons, days))
    effect = np.zeros((persons, days))
    for lag, weight in enumerate([0.3, 0.2, 0.1, 0.05]):
        effect[:, lag:] += weight * exposure[:, :days - lag]
    outcome = 60 + rng.normal(0, 5, (persons, 1)) + effect + np.sin(np.arange(days) / 20)[None, :] + rng.normal(0, 2, (persons, days))
    return pd.DataFrame({"person_id": np.repeat(np.arange(persons), days), "date": np.tile(dates, persons),
                         "x": exposure.ravel(), "y": outcome.ravel()})


def crossbasis(frame):
    from explorer.analysis import dlnm, splines

    return dlnm.CrossBasis(splines.natural_spline(frame.x, df=3), splines.natural_spline(np.arange(22), df=4, intercept=True), 21)


def statsmodels_dlnm(frame, cb):
    """The same model as a user writes it: the cross-basis and day indicators as columns, MixedLM."""
    import statsmodels.api as sm

    from explorer.analysis import dlnm

    history = dlnm.exposure_history(frame, "x", "date", cb.lags, "person_id")
    design = pd.DataFrame(cb(history), columns=cb.columns)
    days = pd.get_dummies(frame.date.dt.strftime("%j"), prefix="d", drop_first=True).astype(float)
    design = pd.concat([pd.Series(1.0, index=frame.index, name="intercept"), design, days], axis=1)
    usable = design.notna().all(axis=1).to_numpy()
    design = design[usable]
    design = design.loc[:, design.abs().sum() > 0]  # days before any whole history
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sm.MixedLM(frame.y[usable].to_numpy(), design, groups=frame.person_id[usable].to_numpy()).fit(reml=True)
    return result.fe_params[cb.columns].to_numpy()


def counting_process(persons: int, intervals: int = 12, seed: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    level = rng.normal(7, 2.5, persons)
    age = rng.uniform(40, 80, persons)
    steps = np.clip(level[:, None] + rng.normal(0, 1.5, (persons, intervals)), 0.5, None)
    hazard = 0.0015 * np.exp(np.log(0.85) * (steps - 8) + 0.03 * (age[:, None] - 60))
    wait = rng.exponential(1 / hazard)
    event = wait < 30
    first = np.where(event.any(axis=1), event.argmax(axis=1), intervals)
    keep = np.arange(intervals)[None, :] <= first[:, None]
    person, month = np.nonzero(keep)
    is_event = event[person, month] & (month == first[person])
    start = month * 30.0
    stop = np.where(is_event, start + np.ceil(wait[person, month]), start + 30)
    return pd.DataFrame({"person_id": person, "start": start, "stop": stop, "event": is_event,
                         "steps": steps[person, month], "age": age[person]})


def textbook_cox(frame, covariates, iterations: int = 25):
    """Breslow partial likelihood by Newton-Raphson, the risk set found anew at each event time."""
    x = frame[covariates].to_numpy(float)
    start, stop, event = frame.start.to_numpy(), frame.stop.to_numpy(), frame.event.to_numpy(bool)
    times = np.unique(stop[event])
    beta = np.zeros(x.shape[1])
    for _ in range(iterations):
        gradient, hessian = np.zeros_like(beta), np.zeros((len(beta), len(beta)))
        r = np.exp(x @ beta)
        for t in times:
            at_risk = (start < t) & (stop >= t)
            dead = event & (stop == t)
            w = r[at_risk]
            s0 = w.sum()
            xbar = (w[:, None] * x[at_risk]).sum(0) / s0
            second = (w[:, None, None] * x[at_risk][:, :, None] * x[at_risk][:, None, :]).sum(0) / s0
            d = dead.sum()
            gradient += x[dead].sum(0) - d * xbar
            hessian -= d * (second - np.outer(xbar, xbar))
        step = np.linalg.solve(hessian, gradient)
        beta = beta - step
        if np.abs(step).max() < 1e-9:
            break
    return beta


@benchmark("analysis")
def run(scale: float, repeats: int, progress) -> list[Result]:
    from explorer.analysis import dlnm, survival

    results = []
    # ---- DLNM
    n_big, n_small = max(20, int(2000 * scale)), max(10, int(100 * scale))
    progress(0, 4, f"DLNM: {n_big} persons x 365 days")
    big = person_days(n_big)
    cb = crossbasis(big)
    start = time.perf_counter()
    fit = dlnm.fit_person_days(big, "y", "x", cb)
    ours_big = time.perf_counter() - start
    overall = fit.predict(at=[1.0], centre=0.0).overall[0]
    results.append(Result("analysis", f"dlnm {n_big}x365 lag 21", ours_big, "s", limit=30.0,
                          note=f"{fit.model.n_obs:,} person-days, {cb.df} cross-basis + 364 day effects; overall "
                               f"effect per unit {overall:.3f} (planted 0.65)"))
    progress(1, 4, f"DLNM: {n_small} persons, ours and statsmodels MixedLM")
    small = person_days(n_small, seed=5)
    cb_small = crossbasis(small)
    start = time.perf_counter()
    ours_fit = dlnm.fit_person_days(small, "y", "x", cb_small)
    ours_small = time.perf_counter() - start
    start = time.perf_counter()
    theirs = statsmodels_dlnm(small, cb_small)
    theirs_small = time.perf_counter() - start
    agree = float(np.max(np.abs(ours_fit.coef - theirs)))
    results.append(Result("analysis", f"dlnm {n_small}x365 lag 21", ours_small, "s",
                          f"statsmodels MixedLM {n_small}x365", theirs_small,
                          note=f"same coefficients to {agree:.1e}"))
    # ---- Cox
    n_cox, n_textbook = max(1000, int(100_000 * scale)), max(500, int(10_000 * scale))
    progress(2, 4, f"Cox: {n_cox} persons x 12 intervals")
    rows = counting_process(n_cox)
    start = time.perf_counter()
    cox = survival.cox(rows, "stop", "event", ["steps", "age"], start="start", cluster="person_id")
    ours_cox = time.perf_counter() - start
    results.append(Result("analysis", f"cox {n_cox}x12 time-varying", ours_cox, "s", limit=30.0,
                          note=f"{len(rows):,} rows, {cox.n_events:,} events, Efron, robust SEs; "
                               f"HR per 1,000 steps {cox.table.hazard_ratio['steps']:.3f} (planted 0.85)"))
    progress(3, 4, f"Cox: {n_textbook} persons, ours and the textbook Newton-Raphson")
    rows_small = counting_process(n_textbook, seed=7)
    start = time.perf_counter()
    ours_small_fit = survival.cox(rows_small, "stop", "event", ["steps", "age"], start="start", ties="breslow")
    ours_small_cox = time.perf_counter() - start
    start = time.perf_counter()
    textbook = textbook_cox(rows_small, ["steps", "age"])
    textbook_time = time.perf_counter() - start
    agree = float(np.max(np.abs(ours_small_fit.table.coef.to_numpy() - textbook)))
    results.append(Result("analysis", f"cox {n_textbook}x12 (Breslow)", ours_small_cox, "s",
                          f"textbook Newton-Raphson {n_textbook}x12", textbook_time,
                          note=f"same coefficients to {agree:.1e}"))
    progress(4, 4, "done")
    return results
