"""Time to event: Kaplan-Meier curves with the number at risk, and Cox proportional hazards models
with time-varying covariates (start/stop rows), restricted cubic splines, robust standard errors and
the Grambsch-Therneau test of proportional hazards.

The Cox partial likelihood is maximised by statsmodels' ``PHReg`` (late entry gives the start/stop
counting-process form of Andersen & Gill 1982; Efron's or Breslow's handling of ties).

References
----------
Kaplan EL, Meier P. Nonparametric estimation from incomplete observations. JASA. 1958;53:457-481.
Cox DR. Regression models and life-tables. J R Stat Soc B. 1972;34:187-220. Andersen PK, Gill RD.
Cox's regression model for counting processes. Ann Stat. 1982;10:1100-1120. Lin DY, Wei LJ. The
robust inference for the Cox proportional hazards model. JASA. 1989;84:1074-1078. Grambsch PM,
Therneau TM. Proportional hazards tests and diagnostics based on weighted residuals. Biometrika.
1994;81:515-526. Master H, et al. Association of step counts over time with the risk of chronic
disease in the All of Us Research Program. Nat Med. 2022;28:2301-2308.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from explorer.analysis.splines import Basis
from explorer.errors import ExplorerError


def kaplan_meier(duration, event, entry=None, group=None) -> pd.DataFrame:
    """The Kaplan-Meier estimate of survival, with the number at risk at every event or censoring time.

    Parameters
    ----------
    duration : array-like
        Time of the event or of censoring (e.g. days from index).
    event : array-like of bool
        Whether the event happened at ``duration`` (False: censored).
    entry : array-like, optional
        Time each person enters the risk set (late entry); default 0.
    group : array-like, optional
        One curve per group.

    Returns
    -------
    pandas.DataFrame
        ``group`` (if given), ``time``, ``at_risk`` (persons at risk just before ``time``), ``events``,
        ``censored``, ``survival``, ``se`` (Greenwood) and ``low``/``high``, the 95% interval on the
        log(-log) scale (R's ``survfit(conf.type = "log-log")``).

    Notes
    -----
    .. math::

        \\hat S(t) = \\prod_{t_i \\le t}\\left(1 - \\frac{d_i}{n_i}\\right),\\quad
        \\widehat{\\mathrm{Var}}\\,\\hat S(t) = \\hat S(t)^2 \\sum_{t_i \\le t}\\frac{d_i}{n_i (n_i - d_i)}
    """
    duration = np.asarray(duration, dtype=float)
    event = np.asarray(event).astype(bool)
    entry = np.zeros_like(duration) if entry is None else np.asarray(entry, dtype=float)
    if np.any(~np.isfinite(duration)) or np.any(duration < entry):
        bad = int(np.flatnonzero(~np.isfinite(duration) | (duration < entry))[0])
        raise ExplorerError(f"Kaplan-Meier: row {bad} has duration {duration[bad]} before its entry {entry[bad]} "
                            "(or missing); expected entry <= duration")
    if group is None:
        return _km_one(duration, event, entry)
    group = np.asarray(group)
    frames = []
    for level in pd.unique(group):
        chosen = group == level
        frames.append(_km_one(duration[chosen], event[chosen], entry[chosen]).assign(group=level))
    out = pd.concat(frames, ignore_index=True)
    return out[["group", *[c for c in out.columns if c != "group"]]]


def _km_one(duration: np.ndarray, event: np.ndarray, entry: np.ndarray) -> pd.DataFrame:
    times = np.unique(duration)
    events = np.bincount(np.searchsorted(times, duration[event]), minlength=len(times))
    censored = np.bincount(np.searchsorted(times, duration[~event]), minlength=len(times))
    # at risk just before t: entered before t and not yet left (left at or after t)
    at_risk = (np.searchsorted(np.sort(entry), times, side="left")
               - np.searchsorted(np.sort(duration), times, side="left"))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1 - events / at_risk, 1.0)
        survival = np.cumprod(factor)
        increment = np.where((at_risk > events) & (at_risk > 0), events / (at_risk * (at_risk - events)), np.where(events > 0, np.inf, 0))
        greenwood = np.cumsum(increment)
        se = survival * np.sqrt(greenwood)
        log_log_se = np.sqrt(greenwood) / np.abs(np.log(survival))
        low = survival ** np.exp(1.96 * log_log_se)
        high = survival ** np.exp(-1.96 * log_log_se)
    low = np.where(survival > 0, low, np.nan)
    high = np.where(survival > 0, high, np.nan)
    return pd.DataFrame({"time": times, "at_risk": at_risk, "events": events, "censored": censored,
                         "survival": survival, "se": se, "low": low, "high": high})


@dataclass
class CoxFit:
    """A fitted Cox model.

    Attributes
    ----------
    table : pandas.DataFrame
        Per term: ``coef`` (log hazard ratio), ``se`` (robust if clustered), ``hazard_ratio``, ``low``,
        ``high`` (95% CI of the hazard ratio), ``z``, ``p``; and ``model_se`` (the model-based SE).
    vcov : pandas.DataFrame
        Covariance of the coefficients (robust if clustered).
    n_rows, n_persons, n_events : int
    log_likelihood : float
        Log partial likelihood at the estimate.
    ties : str
    splines : dict
        Term name to its :class:`~explorer.analysis.splines.Basis`, for dose-response predictions.
    """

    table: pd.DataFrame
    vcov: pd.DataFrame
    n_rows: int
    n_persons: int
    n_events: int
    log_likelihood: float
    ties: str
    splines: dict
    schoenfeld: pd.DataFrame
    event_times: np.ndarray
    model_vcov: pd.DataFrame

    def dose_response(self, term: str, at, reference: float) -> pd.DataFrame:
        """Hazard ratio of ``term`` at values ``at`` against ``reference`` through its spline, with 95% CI."""
        if term not in self.splines:
            raise ExplorerError(f"dose_response: {term!r} was not fitted with a spline; splines: {sorted(self.splines)}")
        basis: Basis = self.splines[term]
        names = basis.column_names(f"{term}_s")
        rows = basis(np.atleast_1d(at)) - basis(np.array([reference]))
        coef = self.table.loc[names, "coef"].to_numpy()
        vcov = self.vcov.loc[names, names].to_numpy()
        value = rows @ coef
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", rows, vcov, rows), 0))
        return pd.DataFrame({term: np.atleast_1d(at), "hazard_ratio": np.exp(value),
                             "low": np.exp(value - 1.96 * se), "high": np.exp(value + 1.96 * se)})

    def proportional_hazards_test(self, transform: str = "rank") -> pd.DataFrame:
        """The Grambsch-Therneau score test of proportional hazards for each term and globally.

        Each term's scaled Schoenfeld residuals are tested for a trend in :math:`g(t)` (``rank``:
        the rank of the event time; ``identity``: the time; ``log``: its log). With :math:`r_k` the
        Schoenfeld residuals at the :math:`d` events, :math:`V` the model covariance,
        :math:`\\tilde g = g - \\bar g` and :math:`u = \\sum_k \\tilde g_k r_k`,

        .. math::

            T_j = \\frac{d\\,(V u)_j^2}{V_{jj} \\sum_k \\tilde g_k^2},\\qquad
            T = \\frac{d\\, u' V u}{\\sum_k \\tilde g_k^2}

        each chi-squared on 1 and :math:`p` degrees of freedom (the approximation of R's
        ``cox.zph`` before survival 3.0, which lifelines' ``proportional_hazard_test`` also computes).
        A small p-value says the hazard ratio changes over follow-up.
        """
        residuals = self.schoenfeld.to_numpy()
        times = self.event_times
        g = {"rank": stats.rankdata(times, method="average"), "identity": times, "log": np.log(times)}.get(transform)
        if g is None:
            raise ExplorerError(f"proportional_hazards_test: transform {transform!r}; expected 'rank', 'identity' or 'log'")
        centred = g - g.mean()
        d = len(times)
        V = self.model_vcov.to_numpy()
        u = centred @ residuals
        scaled = V @ u
        per_term = d * scaled ** 2 / (np.diag(V) * np.sum(centred ** 2))
        overall = d * u @ V @ u / np.sum(centred ** 2)
        names = list(self.schoenfeld.columns)
        out = pd.DataFrame({"statistic": per_term, "df": 1, "p": stats.chi2.sf(per_term, 1)}, index=names)
        out.loc["GLOBAL"] = [overall, len(names), stats.chi2.sf(overall, len(names))]
        return out


def cox(frame: pd.DataFrame, stop: str, event: str, covariates=(), start: str | None = None, cluster: str | None = None,
        splines: dict | None = None, ties: str = "efron", strata: str | None = None) -> CoxFit:
    """Fit a Cox proportional hazards model, with time-varying covariates when rows are start/stop intervals.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per person (``start`` omitted) or per person-interval (counting-process form: the
        covariates hold on ``(start, stop]``; the event, if any, is at ``stop`` of the last interval).
    stop, event : str
        End of the interval and whether it ended with the event.
    covariates : sequence of str
        Terms entered linearly.
    start : str, optional
        Start of the interval (late entry).
    cluster : str, optional
        Person column: robust (sandwich) standard errors of Lin & Wei (1989) that allow for several
        rows of a person.
    splines : dict, optional
        ``{column: Basis}``: terms entered as a spline (e.g.
        :func:`~explorer.analysis.splines.restricted_cubic_spline` of daily steps) for a dose-response
        curve; read it back with :meth:`CoxFit.dose_response`.
    ties : {"efron", "breslow"}
    strata : str, optional
        A column whose levels get their own baseline hazard.

    Returns
    -------
    CoxFit
    """
    from statsmodels.duration.hazard_regression import PHReg

    splines = dict(splines or {})
    needed = [stop, event, *covariates, *splines, *([start] if start else []), *([cluster] if cluster else []),
              *([strata] if strata else [])]
    missing = [c for c in needed if c not in frame]
    if missing:
        raise ExplorerError(f"Cox model: column(s) {missing} not in the frame; it has {list(frame.columns)}")
    if ties not in ("efron", "breslow"):
        raise ExplorerError(f"Cox model: ties={ties!r}; expected 'efron' or 'breslow'")
    data = frame[needed].dropna()
    if start and np.any(data[start].to_numpy() >= data[stop].to_numpy()):
        bad = data.index[data[start] >= data[stop]][0]
        raise ExplorerError(f"Cox model: row {bad} has {start} = {data.at[bad, start]} not before {stop} = {data.at[bad, stop]}; "
                            "expected start < stop for every interval")
    columns = {c: data[c].astype(float).to_numpy() for c in covariates}
    for term, basis in splines.items():
        for name, column in zip(basis.column_names(f"{term}_s"), basis(data[term].to_numpy(dtype=float)).T):
            columns[name] = column
    if not columns:
        raise ExplorerError("Cox model: no covariates; give covariates= or splines=")
    design = pd.DataFrame(columns, index=data.index)
    status = data[event].astype(bool).to_numpy()
    if status.sum() == 0:
        raise ExplorerError(f"Cox model: no events in {event!r} among {len(data)} rows; nothing to fit")
    stop_time = data[stop].to_numpy(dtype=float)
    entry = data[start].to_numpy(dtype=float) if start else np.full(len(data), -np.inf)
    # PHReg wants times >= 0 and counts a row at risk at t when entry <= t (Stata's rule); the
    # counting process needs entry < t (R's), or a person split at an event time is at risk twice.
    origin = min(0.0, float(entry.min()) if start else 0.0, float(stop_time.min()))
    model = PHReg(stop_time - origin, design.to_numpy(), status=status.astype(int),
                  entry=np.nextafter(entry - origin, np.inf) if start else None,
                  strata=data[strata].to_numpy() if strata else None, ties=ties)
    result = model.fit()
    names = list(design.columns)
    coef = np.asarray(result.params)
    model_vcov = np.asarray(result.cov_params())
    x = design.to_numpy()
    layers = pd.factorize(data[strata])[0] if strata else np.zeros(len(data), int)
    schoenfeld, score = _efron_residuals(x, entry, stop_time, status, layers, coef)
    if cluster:
        clustered = pd.DataFrame(score).groupby(data[cluster].to_numpy()).sum().to_numpy()
        vcov = model_vcov @ (clustered.T @ clustered) @ model_vcov
    else:
        vcov = model_vcov
    se = np.sqrt(np.diag(vcov))
    z = coef / se
    table = pd.DataFrame({"coef": coef, "se": se, "hazard_ratio": np.exp(coef), "low": np.exp(coef - 1.96 * se),
                          "high": np.exp(coef + 1.96 * se), "z": z, "p": 2 * stats.norm.sf(np.abs(z)),
                          "model_se": np.sqrt(np.diag(model_vcov))}, index=names)
    return CoxFit(table, pd.DataFrame(vcov, index=names, columns=names), len(data),
                  int(data[cluster].nunique()) if cluster else len(data), int(status.sum()), float(result.llf), ties, splines,
                  pd.DataFrame(schoenfeld[status], columns=names), stop_time[status],
                  pd.DataFrame(model_vcov, index=names, columns=names))


def _efron_residuals(x, entry, stop, status, layers, coef) -> tuple[np.ndarray, np.ndarray]:
    r"""Schoenfeld residuals (rows with an event) and score residuals (every row) under Efron's ties.

    With :math:`m` events tied at :math:`\tau`, risk-set sums :math:`S_0, S_1` and the sums over the
    tied events :math:`S_0^D, S_1^D`, Efron's approximation splits the hazard step in :math:`m` parts
    with denominators :math:`d_k = S_0 - \tfrac{k}{m} S_0^D` and means
    :math:`\bar x_k = (S_1 - \tfrac{k}{m} S_1^D)/d_k`, :math:`k = 0..m-1`. An event's Schoenfeld
    residual is :math:`x_i - \tfrac1m\sum_k \bar x_k`; a row's score residual subtracts its
    compensator :math:`r_i \sum_{\tau \in (entry_i, stop_i]} \sum_k a_{ik} (x_i - \bar x_k)/d_k`
    with :math:`a_{ik} = 1` for rows at risk, :math:`1 - k/m` for the tied events themselves
    (Therneau & Grambsch 2000, sections 3.7 and 4.6; R's ``coxph`` robust variance).
    """
    n, p = x.shape
    risk = np.exp(x @ coef - (x @ coef).max())
    schoenfeld = np.zeros((n, p))
    score = np.zeros((n, p))
    for layer in np.unique(layers):
        rows = np.flatnonzero(layers == layer)
        xs, rs, st, en, ev = x[rows], risk[rows], stop[rows], entry[rows], status[rows]
        times = np.unique(st[ev])
        if len(times) == 0:
            continue
        # risk-set sums at each event time: rows with entry < tau <= stop
        by_stop, by_entry = np.argsort(st), np.argsort(en)
        leaving = np.searchsorted(st[by_stop], times, side="left")
        entering = np.searchsorted(en[by_entry], times, side="left")
        s0 = _tail_sums(rs, by_stop)[leaving] - _tail_sums(rs, by_entry)[entering]
        s1 = _tail_sums(rs[:, None] * xs, by_stop)[leaving] - _tail_sums(rs[:, None] * xs, by_entry)[entering]
        event_index = np.searchsorted(times, st[ev])
        m = np.bincount(event_index, minlength=len(times)).astype(float)
        s0d = np.bincount(event_index, weights=rs[ev], minlength=len(times))
        s1d = np.stack([np.bincount(event_index, weights=(rs[ev] * xs[ev, j]), minlength=len(times)) for j in range(p)], axis=1)
        mean_x = np.zeros((len(times), p))
        h, h1 = np.zeros(len(times)), np.zeros((len(times), p))  # sums over k of 1/d_k and xbar_k/d_k
        h_tied, h1_tied = np.zeros(len(times)), np.zeros((len(times), p))  # the same weighted by 1 - k/m
        for k in range(int(m.max())):
            active = m > k
            frac = np.where(active, k / np.maximum(m, 1), 0.0)
            d = s0 - frac * s0d
            xbar = (s1 - frac[:, None] * s1d) / d[:, None]
            inv = np.where(active, 1 / d, 0.0)
            mean_x += np.where(active[:, None], xbar, 0.0)
            h += inv
            h1 += inv[:, None] * xbar
            h_tied += inv * (1 - frac)
            h1_tied += (inv * (1 - frac))[:, None] * xbar
        mean_x /= m[:, None]
        event_rows = np.flatnonzero(ev)
        schoenfeld[rows[event_rows]] = xs[event_rows] - mean_x[event_index]
        # compensator over the event times in (entry, stop]
        cum_h = np.r_[0.0, np.cumsum(h)]
        cum_h1 = np.vstack([np.zeros((1, p)), np.cumsum(h1, axis=0)])
        upper = np.searchsorted(times, st, side="right")
        lower = np.searchsorted(times, en, side="right")
        hazard = cum_h[upper] - cum_h[lower]
        weighted = cum_h1[upper] - cum_h1[lower]
        compensator = rs[:, None] * (xs * hazard[:, None] - weighted)
        own = event_index
        compensator[event_rows] -= rs[event_rows, None] * (xs[event_rows] * (h[own] - h_tied[own])[:, None] - (h1[own] - h1_tied[own]))
        score[rows] = schoenfeld[rows] - compensator
    return schoenfeld, score


def _tail_sums(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Sums of ``values`` from each position of ``order`` to the end, and a final zero."""
    ordered = values[order]
    return np.concatenate([np.cumsum(ordered[::-1], axis=0)[::-1], np.zeros((1,) + values.shape[1:])])
