"""The fast mixed model agrees with statsmodels' MixedLM (REML and ML, tightly converged) to
1e-4 relative on fixed effects, their standard errors, variance components and per-person slopes,
on balanced, unbalanced and two-visit designs; it does not depend on where time starts."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.ageing import ageing_rates
from explorer.errors import ExplorerError

DESIGNS = {"balanced": (150, 6, False), "unbalanced": (150, 6, True), "two visits": (200, 2, False)}


def design(n, visits, seed, unbalanced=False):
    rng = np.random.default_rng(seed)
    k = rng.integers(1, visits * 2, n) if unbalanced else np.full(n, visits)
    person = np.repeat(np.arange(n), k)
    first_age = rng.uniform(30, 70, n)
    age = first_age[person] + np.concatenate([np.sort(rng.uniform(0, 10, m)) for m in k])
    b0, b1 = rng.normal(0, 2, n), rng.normal(0, 0.1, n)
    value = 40 + b0[person] + (0.2 + b1[person]) * (age - 50) + rng.normal(0, 1, len(age))
    return pd.DataFrame({"person": [f"p{p:04d}" for p in person], "age": age, "value": value})


def statsmodels_fit(frame, reml):
    """statsmodels on centred and scaled time (its best case), converged tightly, transformed back."""
    import statsmodels.api as sm

    centre, scale = frame["age"].mean(), frame["age"].std()
    u = ((frame["age"] - centre) / scale).to_numpy()
    exog = np.column_stack([np.ones(len(frame)), u])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.MixedLM(frame["value"].to_numpy(), exog, groups=frame["person"].to_numpy(), exog_re=exog).fit(
            reml=reml, method="bfgs", gtol=1e-10, maxiter=5000)
    back = np.array([[1, -centre / scale], [0, 1 / scale]])
    fixed = back @ fit.fe_params
    cov = back @ np.asarray(fit.cov_re) @ back.T
    se = np.sqrt(np.diag(back @ np.asarray(fit.cov_params())[:2, :2] @ back.T))
    effects = pd.DataFrame({g: back @ np.asarray(v) for g, v in fit.random_effects.items()}).T
    return {"fixed": fixed, "fixed_se": se,
            "variance": np.array([cov[0, 0], cov[1, 1], cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]), fit.scale]),
            "slopes": fixed[1] + effects[1].sort_index().to_numpy(),
            "intercepts": fixed[0] + effects[0].sort_index().to_numpy()}


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("name", list(DESIGNS))
def test_agrees_with_statsmodels(name, reml):
    n, visits, unbalanced = DESIGNS[name]
    frame = design(n, visits, seed=3, unbalanced=unbalanced)
    ours = ageing_rates(frame, "value", "age", "person", reml=reml)
    reference = statsmodels_fit(frame, reml)
    assert ours.converged and ours.n_groups == n and ours.n_obs == len(frame)
    np.testing.assert_allclose(ours.fixed[["intercept", "slope"]], reference["fixed"], rtol=1e-4)
    np.testing.assert_allclose(ours.fixed_se[["intercept", "slope"]], reference["fixed_se"], rtol=1e-4)
    np.testing.assert_allclose(ours.variance[["intercept", "slope", "corr", "residual"]], reference["variance"], rtol=1e-4)
    np.testing.assert_allclose(ours.per_group["slope"], reference["slopes"], rtol=1e-4)
    np.testing.assert_allclose(ours.per_group["intercept"], reference["intercepts"], rtol=1e-4)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.floats(-80, 80))
def test_where_time_starts_changes_only_the_intercept(seed, shift):
    frame = design(60, 5, seed)
    moved = frame.assign(age=frame["age"] + shift)
    a, b = ageing_rates(frame, "value", "age", "person"), ageing_rates(moved, "value", "age", "person")
    assert b.fixed["slope"] == pytest.approx(a.fixed["slope"], rel=1e-6, abs=1e-9)
    assert b.fixed["intercept"] == pytest.approx(a.fixed["intercept"] - a.fixed["slope"] * shift, rel=1e-6, abs=1e-6)
    for component in ("slope", "residual"):
        assert b.variance[component] == pytest.approx(a.variance[component], rel=1e-5)
    np.testing.assert_allclose(b.per_group["slope"], a.per_group["slope"], rtol=1e-5, atol=1e-6)


def test_planted_slopes_are_recovered():
    frame = design(400, 8, seed=9)
    fit = ageing_rates(frame, "value", "age", "person")
    assert fit.fixed["slope"] == pytest.approx(0.2, abs=0.03)
    assert fit.variance["slope"] == pytest.approx(0.01, rel=0.3) and fit.variance["residual"] == pytest.approx(1, rel=0.1)
    assert 0 <= fit.slope_p_value < 1e-6


def test_bad_input_says_what_is_wrong():
    frame = design(10, 3, seed=1)
    with pytest.raises(ExplorerError, match="column\\(s\\) years missing"):
        ageing_rates(frame, "value", "years", "person")
    with pytest.raises(ExplorerError, match="at least 2 groups"):
        ageing_rates(frame[frame["person"] == "p0000"], "value", "age", "person")
    with pytest.raises(ExplorerError, match="'age' never changes"):
        ageing_rates(frame.assign(age=50.0), "value", "age", "person")
    with_gaps = frame.copy()
    with_gaps.loc[:4, "value"] = np.nan
    assert ageing_rates(with_gaps, "value", "age", "person").n_obs == len(frame) - 5


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_a_large_level_and_the_likelihood_of_the_data_as_given(reml):
    import statsmodels.api as sm
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    frame = design(150, 6, seed=3)
    shifted = frame.assign(value=frame["value"] * 7 + 1e5)  # a level far above its noise
    base, moved = ageing_rates(frame, "value", "age", "person", reml=reml), ageing_rates(shifted, "value", "age", "person", reml=reml)
    assert moved.converged
    assert moved.fixed["slope"] == pytest.approx(7 * base.fixed["slope"], rel=1e-6)
    assert moved.variance["slope"] == pytest.approx(49 * base.variance["slope"], rel=1e-5)
    np.testing.assert_allclose(moved.fixed_se, 7 * base.fixed_se, rtol=1e-4)
    # the log-likelihood is statsmodels' loglike of the data as given, at these estimates
    exog = np.column_stack([np.ones(len(shifted)), shifted["age"].to_numpy()])
    model = sm.MixedLM(shifted["value"].to_numpy(), exog, groups=shifted["person"].to_numpy(), exog_re=exog)
    model.reml, model.cov_pen, model.fe_pen = reml, None, None
    v = moved.variance
    cov = np.array([[v["intercept"], v["corr"] * np.sqrt(v["intercept"] * v["slope"])],
                    [v["corr"] * np.sqrt(v["intercept"] * v["slope"]), v["slope"]]])
    params = MixedLMParams.from_components(moved.fixed.to_numpy(), cov_re=cov / v["residual"])
    assert moved.log_likelihood == pytest.approx(model.loglike(params, profile_fe=False), rel=1e-9)


def test_cross_sectional_data_is_refused():
    frame = design(30, 3, seed=2).groupby("person").head(1)
    with pytest.raises(ExplorerError, match="at least 2 persons with two visits or more"):
        ageing_rates(frame, "value", "age", "person")
