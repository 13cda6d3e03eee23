"""Known answers for explorer.analysis: splines, cross-basis, DLNM predictions and attributable risk,
the random-intercept REML fit, Cox, Kaplan-Meier, case-crossover and Table 1."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from explorer.analysis import casecrossover, dlnm, splines, survival, table_one
from explorer.analysis.regression import quasi_poisson, random_intercept
from explorer.errors import ExplorerError

DATA = Path(__file__).parent / "data" / "analysis"


# ---------------------------------------------------------------- splines

def _esl_natural_spline(x, knots):
    """Hastie, Tibshirani & Friedman (ESL, eq. 5.4-5.5): 1, x, d_k - d_{K-1}."""
    K = len(knots)
    d = lambda k: (np.maximum(x - knots[k], 0) ** 3 - np.maximum(x - knots[-1], 0) ** 3) / (knots[-1] - knots[k])
    return np.column_stack([np.ones_like(x), x] + [d(k) - d(K - 2) for k in range(K - 2)])


def _same_span(a, b):
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    return np.abs(a @ coef - b).max()


def test_natural_spline_spans_the_published_natural_cubic_spline_space_and_is_linear_outside():
    x = np.linspace(-3, 13, 161)
    basis = splines.natural_spline(np.linspace(0, 10, 50), df=4)
    assert basis.boundary == (0.0, 10.0) and basis.df == 4
    knots = np.r_[0.0, basis.knots, 10.0]
    ours = np.column_stack([np.ones_like(x), basis(x)])
    assert _same_span(ours, _esl_natural_spline(x, knots)) < 1e-9
    assert _same_span(_esl_natural_spline(x, knots), ours) < 1e-9
    below = basis(np.array([-3.0, -2.0, -1.0, 0.0]))
    assert np.allclose(np.diff(below, 2, axis=0), 0, atol=1e-12)  # straight line beyond the boundary


def test_restricted_cubic_spline_by_hand_and_its_span():
    basis = splines.restricted_cubic_spline(knots=[0, 1, 2, 4])
    # x = 3: (3-0)^3 - (3-2)^3 (4-0)/(4-2) + 0 = 27 - 2 = 25, over (4-0)^2; (3-1)^3 - 1*(3/2) = 6.5, over 16
    assert np.allclose(basis(np.array([3.0])), [[3.0, 25 / 16, 6.5 / 16]])
    x = np.linspace(-2, 6, 81)
    assert _same_span(np.column_stack([np.ones_like(x), basis(x)]), _esl_natural_spline(x, np.array([0.0, 1, 2, 4]))) < 1e-9
    with pytest.raises(ExplorerError, match="strictly increasing"):
        splines.restricted_cubic_spline(knots=[0, 1, 1, 2])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=8, max_size=40, unique=True), st.integers(2, 6))
def test_splines_with_an_intercept_reproduce_straight_lines_and_b_splines_sum_to_one(values, df):
    x = np.sort(np.asarray(values))
    if np.ptp(x) < 1e-3 or len(np.unique(np.round(x, 6))) < df + 2:
        return
    for basis in (splines.natural_spline(x, df=df + 1, intercept=True), splines.b_spline(x, df=df + 3, intercept=True)):
        line = 2.5 - 0.75 * x
        design = basis(x)
        assert _same_span(design, line[:, None]) < 1e-6 * (1 + np.abs(line).max())
    assert np.allclose(splines.b_spline(x, df=df + 3, intercept=True)(x).sum(axis=1), 1)


def test_strata_integer_linear_and_polynomial_columns():
    assert np.array_equal(splines.strata([2, 5])(np.array([0, 2, 4, 5, 9])),
                          [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]])
    assert np.array_equal(splines.strata([2, 5], intercept=False)(np.array([0, 3])), [[0, 0], [1, 0]])
    assert np.array_equal(splines.integer(range(3))(np.array([0, 1, 2])), np.eye(3))
    assert np.allclose(splines.polynomial(np.array([-4, 2]), degree=2)(np.array([2.0])), [[0.5, 0.25]])
    assert np.isnan(splines.linear()(np.array([np.nan]))).all()


# ---------------------------------------------------------------- cross-basis and DLNM

def test_exposure_history_follows_calendar_days_within_each_group():
    frame = pd.DataFrame({"person_id": ["a", "a", "a", "b", "b"],
                          "date": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-04", "2024-01-02", "2024-01-03"]),
                          "x": [1.0, 2.0, 4.0, 20.0, 30.0]})
    history = dlnm.exposure_history(frame, "x", "date", [0, 1, 2], "person_id")
    expected = [[1, np.nan, np.nan], [2, 1, np.nan], [4, np.nan, 2], [20, np.nan, np.nan], [30, 20, np.nan]]
    assert np.allclose(history, expected, equal_nan=True)
    with pytest.raises(ExplorerError, match="more than one row for a day"):
        dlnm.exposure_history(pd.concat([frame, frame.head(1)]), "x", "date", [0], "person_id")


def test_cross_basis_by_hand():
    # exposure basis (x, x^2/s^2) with s = 3; lag basis strata {0}, {1, 2}
    cb = dlnm.CrossBasis(splines.polynomial(np.array([3.0]), degree=2), splines.strata([1]), max_lag=2)
    history = np.array([[3.0, 0.0, 1.5]])
    f = lambda x: np.array([x / 3, (x / 3) ** 2])
    # w_{j,k} = sum_l f_j(x_{t-l}) c_k(l): k=1 is lag 0 only, k=2 lags 1 and 2
    expected = np.array([[f(3)[0], f(0)[0] + f(1.5)[0], f(3)[1], f(0)[1] + f(1.5)[1]]])
    assert np.allclose(cb(history), expected)
    assert cb.columns == ["cb.v1.l1", "cb.v1.l2", "cb.v2.l1", "cb.v2.l2"]
    assert np.isnan(cb(np.array([[1.0, np.nan, 2.0]]))).all()


def _fit_by_hand(coef, crossbasis, history, counts, dates):
    """A DlnmFit with given coefficients, for hand-computed predictions and attributable numbers."""
    data = pd.DataFrame({"_date": dates, "y": counts, "_exposure_today": history[:, 0]})
    model = None
    return dlnm.DlnmFit(crossbasis, np.asarray(coef, float), np.eye(len(coef)) * 1e-6, "log", model, data,
                        history, "y")


def test_predictions_and_attributable_numbers_from_the_published_definitions():
    # linear exposure, one free coefficient per lag (an unconstrained distributed lag model)
    cb = dlnm.CrossBasis(splines.linear(), splines.integer(range(3)), max_lag=2)
    theta = np.array([0.03, 0.02, 0.01])
    rng = np.random.default_rng(4)
    days = 40
    x = rng.normal(25, 5, days)
    dates = pd.date_range("2024-06-01", periods=days)
    frame = pd.DataFrame({"date": dates, "x": x})
    history = dlnm.exposure_history(frame, "x", "date", cb.lags)[2:]
    counts = rng.poisson(30, days)[2:].astype(float)
    fit = _fit_by_hand(theta, cb, history, counts, dates[2:])
    prediction = fit.predict(at=[30.0], centre=20.0)
    assert np.isclose(prediction.overall[0], 10 * theta.sum())           # beta_x = sum_l beta_{x,l}
    assert np.allclose(prediction.lag_specific[0], 10 * theta)
    centre = 22.0
    backward = fit.attributable(centre=centre, simulations=50)
    by_hand = sum(counts[t] * (1 - np.exp(-sum(theta[l] * (history[t, l] - centre) for l in range(3))))
                  for t in range(len(counts)))
    assert np.isclose(backward.number, by_hand) and np.isclose(backward.fraction, by_hand / counts.sum())
    forward = fit.attributable(centre=centre, perspective="forward", simulations=50)
    by_hand = sum((1 - np.exp(-theta.sum() * (history[t, 0] - centre))) * counts[t:t + 3].mean()
                  for t in range(len(counts) - 2))  # the last two days have no whole future
    assert np.isclose(forward.number, by_hand)
    heat = fit.attributable(centre=centre, exposure_range="above", simulations=50)
    kept = np.where(history > centre, history, centre)
    by_hand = sum(counts[t] * (1 - np.exp(-sum(theta[l] * (kept[t, l] - centre) for l in range(3)))) for t in range(len(counts)))
    assert np.isclose(heat.number, by_hand) and heat.number_low <= heat.number <= heat.number_high


def test_a_linear_unconstrained_dlnm_on_a_public_daily_series_is_the_glm_on_lagged_columns():
    air = pd.read_csv(DATA / "airquality.csv")
    air["date"] = pd.to_datetime(dict(year=1973, month=air.Month, day=air.Day))
    cb = dlnm.CrossBasis(splines.linear(), splines.integer(range(4)), max_lag=3)
    fit = dlnm.fit_time_series(air, "Ozone", "Temp", cb, df_per_year=0, day_of_week=False)
    lagged = pd.DataFrame({f"t{l}": air.Temp.shift(l) for l in range(4)})
    by_hand = pd.concat([pd.Series(1.0, index=air.index, name="const"), lagged], axis=1)
    keep = air.Ozone.notna() & lagged.notna().all(axis=1)
    expected = quasi_poisson(by_hand[keep], air.Ozone[keep])
    assert fit.model.n_obs == int(keep.sum()) == 113
    assert np.allclose(fit.coef, expected.coef.to_numpy()[1:], rtol=1e-8)
    assert np.allclose(np.sqrt(np.diag(fit.vcov)), expected.se.to_numpy()[1:], rtol=1e-6)
    overall = fit.predict(at=[80.0], centre=70.0).overall_frame()
    assert np.isclose(np.log(overall.effect[0]), 10 * expected.coef.to_numpy()[1:].sum())


def _planted_series(seed=0, years=6):
    rng = np.random.default_rng(seed)
    n = int(365.25 * years)
    dates = pd.date_range("2001-01-01", periods=n)
    temp = 15 - 10 * np.cos(2 * np.pi * dates.day_of_year.to_numpy() / 365.25) + rng.normal(0, 4, n)
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    lagged = np.column_stack([np.r_[np.full(l, temp[0]), temp[:n - l]] for l in range(4)])
    eta = np.log(60) + 0.15 * np.cos(2 * np.pi * dates.day_of_year.to_numpy() / 365.25) + 0.02 * (lagged - 15) @ weights
    return pd.DataFrame({"date": dates, "temp": temp, "deaths": rng.poisson(np.exp(eta))}), weights


def test_a_planted_lag_structure_is_recovered_within_its_intervals():
    frame, weights = _planted_series()
    cb = dlnm.CrossBasis(splines.linear(), splines.natural_spline(knots=[1.0, 3.0], boundary=(0, 7), intercept=True), 7)
    fit = dlnm.fit_time_series(frame, "deaths", "temp", cb)
    prediction = fit.predict(at=[25.0], centre=15.0)
    truth_overall = 0.02 * 10
    overall = prediction.overall_frame().iloc[0]
    assert overall.low <= np.exp(truth_overall) <= overall.high
    truth_by_lag = np.r_[0.02 * 10 * weights, np.zeros(4)]
    lags = prediction.lag_frame()
    covered = (lags.low <= np.exp(truth_by_lag)) & (np.exp(truth_by_lag) <= lags.high)
    assert covered.mean() >= 0.75


def test_random_intercept_reml_equals_statsmodels_mixedlm():
    import statsmodels.api as sm

    rng = np.random.default_rng(1)
    sizes = rng.integers(3, 25, 50)
    groups = np.repeat(np.arange(50), sizes)
    x = rng.normal(size=(len(groups), 2))
    y = 1 + x @ [0.5, -1.0] + rng.normal(0, 2, 50)[groups] + rng.normal(size=len(groups))
    X = pd.DataFrame({"const": 1.0, "a": x[:, 0], "b": x[:, 1]})
    ours = random_intercept(X, y, groups)
    theirs = sm.MixedLM(y, X, groups=groups).fit(reml=True)
    assert np.allclose(ours.coef, theirs.fe_params, atol=1e-6)
    # within statsmodels' own optimiser tolerance; our one-dimensional search finds at least its optimum
    assert np.allclose(ours.se, theirs.bse_fe, rtol=5e-4)
    assert np.isclose(ours.group_variance, theirs.cov_re.iloc[0, 0] * theirs.scale, rtol=5e-4) \
        or np.isclose(ours.group_variance, theirs.cov_re.iloc[0, 0], rtol=5e-4)
    assert np.isclose(ours.scale, theirs.scale, rtol=1e-4)
    assert ours.log_likelihood >= theirs.llf - 1e-7 and np.isclose(ours.log_likelihood, theirs.llf, rtol=1e-8)


def test_person_day_dlnm_recovers_a_planted_heat_effect_on_resting_heart_rate():
    rng = np.random.default_rng(2)
    persons, days = 60, 120
    dates = pd.date_range("2024-05-01", periods=days)
    anomaly = rng.normal(0, 3, (persons, days))
    effect = np.zeros((persons, days))
    for lag, weight in enumerate([0.3, 0.2, 0.1]):  # bpm per K, by lag
        effect[:, lag:] += weight * anomaly[:, :days - lag]
    rhr = 60 + rng.normal(0, 5, persons)[:, None] + effect + rng.normal(0, 1.5, (persons, days))
    frame = pd.DataFrame({"person_id": np.repeat(np.arange(persons), days), "date": np.tile(dates, persons),
                          "tas_anomaly": anomaly.ravel(), "resting_hr": rhr.ravel()})
    cb = dlnm.CrossBasis(splines.linear(), splines.integer(range(6)), max_lag=5)
    fit = dlnm.fit_person_days(frame, "resting_hr", "tas_anomaly", cb)
    prediction = fit.predict(at=[1.0], centre=0.0)
    lags = prediction.lag_frame()
    truth = np.array([0.3, 0.2, 0.1, 0, 0, 0])
    assert ((lags.low <= truth) & (truth <= lags.high)).sum() >= 5
    overall = prediction.overall_frame().iloc[0]
    assert overall.low <= 0.6 <= overall.high
    with pytest.raises(ExplorerError, match="identity link"):
        fit.attributable()


def test_dlnm_errors_name_what_is_wrong():
    frame, _ = _planted_series(years=1)
    cb = dlnm.CrossBasis(splines.linear(), splines.integer(range(3)), max_lag=2)
    with pytest.raises(ExplorerError, match="'pm25'"):
        dlnm.fit_time_series(frame, "deaths", "pm25", cb)
    with pytest.raises(ExplorerError, match="usable rows"):
        dlnm.fit_time_series(frame.head(6), "deaths", "temp", cb, df_per_year=0)
    with pytest.raises(ExplorerError, match="negative"):
        dlnm.fit_time_series(frame.assign(deaths=-frame.deaths), "deaths", "temp", cb)


# ---------------------------------------------------------------- survival

ROSSI_PUBLISHED = {  # Fox & Weisberg (2011), Efron ties: coefficient, SE
    "fin": (-0.37942, 0.19138), "age": (-0.05744, 0.02200), "race": (0.31390, 0.30799), "wexp": (-0.14980, 0.21222),
    "mar": (-0.43370, 0.38187), "paro": (-0.08487, 0.19576), "prio": (0.09150, 0.02865)}


@pytest.fixture(scope="module")
def rossi():
    return pd.read_csv(DATA / "rossi.csv")


def _naive_residuals(x, time, event, beta):
    """Schoenfeld and score residuals from their definitions, one event time at a time (right-censored,
    Efron ties; Therneau & Grambsch 2000, sections 4.6 and 7.2)."""
    n, p = x.shape
    r = np.exp(x @ beta)
    schoenfeld, score = np.zeros((n, p)), np.zeros((n, p))
    for tau in np.unique(time[event]):
        at_risk = time >= tau
        tied = at_risk & event & (time == tau)
        m = tied.sum()
        means, weights = [], []
        for k in range(m):
            d = r[at_risk].sum() - k / m * r[tied].sum()
            xbar = ((r[at_risk, None] * x[at_risk]).sum(0) - k / m * (r[tied, None] * x[tied]).sum(0)) / d
            means.append(xbar)
            weights.append((1.0 / d, k / m))
        for i in np.flatnonzero(at_risk):
            for xbar, (inverse, frac) in zip(means, weights):
                share = (1 - frac) if tied[i] else 1.0
                score[i] -= r[i] * share * inverse * (x[i] - xbar)
        for i in np.flatnonzero(tied):
            schoenfeld[i] = x[i] - np.mean(means, axis=0)
            score[i] += schoenfeld[i]
    return schoenfeld, score


def test_cox_matches_the_published_rossi_fit(rossi):
    fit = survival.cox(rossi, "week", "arrest", list(ROSSI_PUBLISHED))
    for term, (coef, se) in ROSSI_PUBLISHED.items():
        assert fit.table.loc[term, "coef"] == pytest.approx(coef, abs=6e-6)
        assert fit.table.loc[term, "se"] == pytest.approx(se, abs=6e-6)
    assert fit.n_events == 114


def test_residuals_robust_errors_and_the_proportional_hazards_test_equal_their_definitions(rossi):
    terms = list(ROSSI_PUBLISHED)
    fit = survival.cox(rossi.assign(person=range(len(rossi))), "week", "arrest", terms, cluster="person")
    x = rossi[terms].to_numpy(float)
    time, event = rossi.week.to_numpy(float), rossi.arrest.to_numpy(bool)
    beta = fit.table.coef.to_numpy()
    schoenfeld, score = _naive_residuals(x, time, event, beta)
    ours_schoenfeld, ours_score = survival._efron_residuals(x, np.full(len(x), -np.inf), time, event, np.zeros(len(x), int), beta)
    assert np.allclose(ours_schoenfeld[event], schoenfeld[event], atol=1e-9)
    assert np.allclose(ours_score, score, atol=1e-9)
    V = fit.model_vcov.to_numpy()
    assert np.allclose(fit.vcov.to_numpy(), V @ score.T @ score @ V, rtol=1e-9)  # the sandwich of Lin & Wei
    # Grambsch & Therneau: T = d (sum g~ r)' V (sum g~ r) / sum g~^2, per term with V_jj
    for transform, g in (("identity", time[event]), ("log", np.log(time[event]))):
        centred = g - g.mean()
        u = centred @ schoenfeld[event]
        d = event.sum()
        test = fit.proportional_hazards_test(transform)
        assert test.loc["GLOBAL", "statistic"] == pytest.approx(d * u @ V @ u / (centred ** 2).sum())
        assert np.allclose(test.statistic.loc[terms], d * (V @ u) ** 2 / (np.diag(V) * (centred ** 2).sum()))
    assert fit.proportional_hazards_test().loc["age", "p"] < 0.01  # age's effect wanes (Fox & Weisberg)


def test_efron_score_residuals_sum_to_zero_and_the_sandwich_is_near_the_jackknife(rossi):
    from statsmodels.duration.hazard_regression import PHReg

    terms = list(ROSSI_PUBLISHED)
    fit = survival.cox(rossi.assign(person=range(len(rossi))), "week", "arrest", terms, cluster="person")
    x = rossi[terms].to_numpy(float)
    _, score = survival._efron_residuals(x, np.full(len(x), -np.inf), rossi.week.to_numpy(float),
                                         rossi.arrest.to_numpy(bool), np.zeros(len(x), int), fit.table.coef.to_numpy())
    assert np.allclose(score.sum(axis=0), 0, atol=1e-8)  # the score equations at the estimate
    full = fit.table.coef.to_numpy()
    leave_one_out = np.array([PHReg(d.week, d[terms], status=d.arrest, ties="efron").fit().params - full
                              for d in (rossi.drop(index=i) for i in range(0, len(rossi)))])
    jackknife = np.sqrt((leave_one_out ** 2).sum(axis=0))
    assert np.allclose(fit.table.se.to_numpy(), jackknife, rtol=0.08)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_splitting_follow_up_into_intervals_leaves_the_cox_fit_unchanged(seed):
    rng = np.random.default_rng(seed)
    n = 80
    x = rng.normal(size=n)
    time = np.ceil(rng.exponential(20 * np.exp(-0.5 * x))).clip(1, 60)
    event = time < 60
    whole = survival.cox(pd.DataFrame({"t": time, "e": event, "x": x}), "t", "e", ["x"])
    rows = []
    for i in range(n):
        cuts = np.unique(np.r_[0, rng.integers(1, 60, 3), time[i]])
        cuts = cuts[cuts <= time[i]]
        for a, b in zip(cuts[:-1], cuts[1:]):
            rows.append((i, a, b, bool(event[i] and b == time[i]), x[i]))
    split = survival.cox(pd.DataFrame(rows, columns=["id", "start", "stop", "e", "x"]), "stop", "e", ["x"], start="start")
    assert np.isclose(split.table.coef["x"], whole.table.coef["x"], atol=1e-8)
    assert np.isclose(split.table.se["x"], whole.table.se["x"], rtol=1e-6)


def test_cox_with_a_time_varying_spline_recovers_a_planted_dose_response():
    rng = np.random.default_rng(3)
    persons, months = 3000, 12
    # the planted log hazard ratio: a restricted cubic spline falling to 8,000 steps and flat above
    # (the least-squares spline of -0.0002 (min(steps, 8000) - 8000)), so the fitted model can hold it exactly
    basis = splines.restricted_cubic_spline(knots=[2000.0, 5000.0, 8000.0, 11000.0])
    grid = np.linspace(500, 16000, 400)
    gamma, *_ = np.linalg.lstsq(basis(grid), -0.0002 * (np.minimum(grid, 8000) - 8000), rcond=None)
    log_hr = lambda steps: (basis(np.atleast_1d(steps)) - basis(np.array([8000.0]))) @ gamma
    rows = []
    for person in range(persons):
        level = rng.normal(7000, 2500)
        for month in range(months):
            steps = max(500.0, level + rng.normal(0, 1500))
            hazard = 0.004 * np.exp(log_hr(steps)[0])
            t = rng.exponential(1 / hazard)
            if t < 30:
                rows.append((person, month * 30, month * 30 + np.ceil(t), True, steps))
                break
            rows.append((person, month * 30, month * 30 + 30, False, steps))
    frame = pd.DataFrame(rows, columns=["person_id", "start", "stop", "event", "steps"])
    fit = survival.cox(frame, "stop", "event", start="start", cluster="person_id", splines={"steps": basis})
    at = np.array([3000.0, 5000.0, 8000.0, 12000.0])
    curve = fit.dose_response("steps", at, reference=8000.0)
    assert curve.hazard_ratio[2] == pytest.approx(1.0)
    truth = np.exp(log_hr(at))
    se = (np.log(curve.high) - np.log(curve.low)) / (2 * 1.96)
    z = np.abs(np.log(curve.hazard_ratio) - np.log(truth))[se > 0] / se[se > 0]
    assert (z[:2] < 1.96).all() and (z < 2.576).all(), (curve, truth)  # 95% where the data are, 99% in the thin tail
    assert curve.low[0] > 1.0  # fewer steps, clearly more risk
    assert fit.n_persons == persons


def test_kaplan_meier_by_hand_with_late_entry():
    # times 2, 3(c), 3, 5, 7(c), 8; one person enters at 4
    duration = np.array([2, 3, 3, 5, 7, 8.0])
    event = np.array([1, 0, 1, 1, 0, 1], bool)
    entry = np.array([0, 0, 0, 4, 0, 0.0])
    km = survival.kaplan_meier(duration, event, entry=entry).set_index("time")
    assert km.at_risk.tolist() == [5, 4, 3, 2, 1]  # the late entrant is not at risk at 2 or 3
    s2, s3, s5, s8 = 4 / 5, 4 / 5 * 3 / 4, 4 / 5 * 3 / 4 * 2 / 3, 0.0
    assert np.allclose(km.survival.loc[[2, 3, 5, 8]], [s2, s3, s5, s8])
    greenwood = s3 * np.sqrt(1 / (5 * 4) + 1 / (4 * 3))
    assert km.se.loc[3] == pytest.approx(greenwood)
    with pytest.raises(ExplorerError, match="row 0"):
        survival.kaplan_meier([1.0], [True], entry=[2.0])


def test_kaplan_meier_on_rossi_equals_the_product_limit_by_loop(rossi):
    ours = survival.kaplan_meier(rossi.week, rossi.arrest).set_index("time")
    survival_so_far = 1.0
    for t, row in ours.iterrows():
        at_risk = int((rossi.week >= t).sum())
        deaths = int(((rossi.week == t) & (rossi.arrest == 1)).sum())
        survival_so_far *= 1 - deaths / at_risk
        assert row.at_risk == at_risk and row.events == deaths and row.survival == pytest.approx(survival_so_far)
    assert ours.survival.iloc[-1] == pytest.approx(318 / 432)  # no one is lost before week 52: 114 arrests


# ---------------------------------------------------------------- case-crossover

@settings(max_examples=60, deadline=None)
@given(st.dates(min_value=pd.Timestamp("2000-01-01").date(), max_value=pd.Timestamp("2030-12-31").date()))
def test_time_stratified_referents_are_every_same_weekday_of_the_month(day):
    design = casecrossover.time_stratified_referents(pd.DataFrame({"person_id": [1], "date": [pd.Timestamp(day)]}))
    dates = pd.to_datetime(design.date)
    month = pd.date_range(pd.Timestamp(day).replace(day=1), periods=pd.Timestamp(day).days_in_month)
    assert list(dates) == [d for d in month if d.day_of_week == pd.Timestamp(day).day_of_week]
    assert design.case.sum() == 1 and dates[design.case].iloc[0] == pd.Timestamp(day)


def test_case_crossover_equals_the_conditional_likelihood_maximised_by_hand():
    from scipy import optimize

    rng = np.random.default_rng(5)
    dates = pd.date_range("2021-01-01", "2021-12-31")
    exposures = pd.DataFrame([(p, d) for p in range(40) for d in dates], columns=["person_id", "date"])
    exposures["pm25"] = rng.gamma(4, 3, len(exposures))
    events = exposures.sample(60, random_state=1)[["person_id", "date"]]
    events = events[events.date >= "2021-01-03"]
    result = casecrossover.case_crossover(events, exposures, "pm25", lags=[0, 2])
    design = casecrossover.time_stratified_referents(events)
    values = exposures.set_index(["person_id", "date"]).pm25
    x = np.column_stack([[values.get((p, d - pd.Timedelta(days=lag)), np.nan) for p, d in zip(design.person_id, design.date)]
                         for lag in (0, 2)])

    known = np.isfinite(x).all(axis=1)  # a referent day without the exposure (before 1 January) is left out

    def negative_log_likelihood(beta):
        eta = x @ np.asarray(beta)
        total = 0.0
        for stratum, rows in design.groupby("stratum").groups.items():
            rows = np.asarray(rows)
            rows = rows[known[rows]]
            total += eta[rows][design.case.to_numpy()[rows]].sum() - np.log(np.exp(eta[rows]).sum())
        return -total

    by_hand = optimize.minimize(negative_log_likelihood, np.zeros(2), method="BFGS", options={"gtol": 1e-8})
    assert np.allclose(result.table.coef.to_numpy(), by_hand.x, atol=1e-5)
    assert result.n_events == len(events) and result.n_dropped == 0


def test_case_crossover_counts_what_it_leaves_out():
    exposures = pd.DataFrame({"person_id": 1, "date": pd.date_range("2021-03-01", "2021-03-31"), "pm25": 10.0})
    exposures.loc[exposures.date == "2021-03-10", "pm25"] = np.nan
    events = pd.DataFrame({"person_id": [1, 1, 1], "date": pd.to_datetime(["2021-03-10", "2021-03-11", "2021-03-04"])})
    with pytest.raises(ExplorerError, match="usable event"):
        casecrossover.case_crossover(events.head(1), exposures, "pm25")
    result = casecrossover.case_crossover(events, exposures.assign(pm25=np.where(exposures.pm25.isna(), np.nan, np.arange(31.0))),
                                          "pm25")
    assert result.n_dropped == 1 and result.dropped.iloc[0] == "no exposure on the case day"


# ---------------------------------------------------------------- Table 1

def test_table_one_figures_equal_a_recount_and_the_published_smd_formulas():
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"group": rng.choice(["a", "b"], 500), "age": rng.normal(60, 10, 500),
                          "steps": rng.lognormal(8.5, 0.5, 500), "sex": rng.choice(["F", "M"], 500),
                          "race": rng.choice(["w", "x", "y"], 500, p=[0.5, 0.3, 0.2])})
    frame.loc[frame.index[:7], "age"] = np.nan
    frame.loc[frame.index[3:9], "race"] = None
    table = table_one.table_one(frame, "group", continuous=["age"], categorical=["sex", "race"], nonnormal=["steps"])
    a, b = frame[frame.group == "a"], frame[frame.group == "b"]
    row = table[(table.variable == "age") & (table.statistic == "mean (SD)")].iloc[0]
    assert row["a|value"] == pytest.approx(a.age.mean()) and row["b|spread"] == pytest.approx(b.age.std())
    assert row["smd"] == pytest.approx(abs(a.age.mean() - b.age.mean()) / np.sqrt((a.age.var() + b.age.var()) / 2))
    missing = table[(table.variable == "age") & (table.statistic == "missing")].iloc[0]
    assert missing["Overall|n"] == 7 and missing["a|n"] + missing["b|n"] == 7
    steps = table[table.variable == "steps"].iloc[0]
    assert steps["Overall|value"] == pytest.approx(frame.steps.median())
    assert steps["a|low"] == pytest.approx(a.steps.quantile(0.25))
    female = table[(table.variable == "sex") & (table.level == "F")].iloc[0]
    assert female["b|n"] == (b.sex == "F").sum()
    assert female["b|value"] == pytest.approx(100 * (b.sex == "F").mean())
    p1, p2 = (a.sex == "M").mean(), (b.sex == "M").mean()
    assert female.smd == pytest.approx(abs(p1 - p2) / np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2))
    race = table[(table.variable == "race") & (table.statistic == "n (%)")]
    assert race["Overall|n"].sum() == frame.race.notna().sum()
    assert table[(table.variable == "race") & (table.statistic == "missing")]["Overall|n"].iloc[0] == 6
    q1 = np.array([(a.race.dropna() == v).mean() for v in ("x", "y")])
    q2 = np.array([(b.race.dropna() == v).mean() for v in ("x", "y")])
    S = np.array([[q1[0] * (1 - q1[0]) + q2[0] * (1 - q2[0]), -(q1[0] * q1[1] + q2[0] * q2[1])],
                  [-(q1[0] * q1[1] + q2[0] * q2[1]), q1[1] * (1 - q1[1]) + q2[1] * (1 - q2[1])]]) / 2
    assert race.smd.iloc[0] == pytest.approx(np.sqrt((q1 - q2) @ np.linalg.solve(S, q1 - q2)))
    assert table.loc[0, "Overall"] == "500"
    with pytest.raises(ExplorerError, match="'bmi'"):
        table_one.table_one(frame, "group", continuous=["bmi"])


def test_day_effects_without_indicators_equal_the_explicit_indicators():
    rng = np.random.default_rng(8)
    persons, days = 30, 12
    groups = np.repeat(np.arange(persons), days)
    day = np.tile(np.arange(days), persons)
    x = rng.normal(size=persons * days)
    y = 2 + 0.5 * x + np.sin(day) + rng.normal(0, 1, persons)[groups] + rng.normal(size=persons * days)
    X = pd.DataFrame({"const": 1.0, "x": x})
    implicit = random_intercept(X, y, groups, levels=day)
    dummies = pd.get_dummies(day, prefix="d", drop_first=True).astype(float)
    explicit = random_intercept(pd.concat([X, dummies], axis=1), y, groups)
    assert np.allclose(implicit.coef, explicit.coef[["const", "x"]], atol=1e-8)
    assert np.allclose(implicit.vcov, explicit.vcov.loc[["const", "x"], ["const", "x"]], rtol=1e-6)
    assert np.isclose(implicit.log_likelihood, explicit.log_likelihood)
    with pytest.raises(ExplorerError, match="zero on every row"):
        random_intercept(X.assign(empty=0.0), y, groups)
    with pytest.raises(ExplorerError, match="collinear"):
        random_intercept(X.assign(twice=2 * x), y, groups)
