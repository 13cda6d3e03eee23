"""Public survival curves hold for random follow-up and every profile: each count shown (number at
risk at a step's start, its events, its censored, and those still at risk where the curve stops) is
clear of the hidden range; without rounding the counts are the true sums over the step's times; the
survival shown follows from the counts shown alone; and a single time's count is pinned only where a
step holds that one time, whose counts are then themselves clear."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.analysis.survival import kaplan_meier
from explorer.privacy.disclosure import PROFILES
from explorer.privacy.survival import released_survival


@st.composite
def follow_up(draw):
    n = draw(st.integers(1, 160))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    horizon = draw(st.integers(5, 60))
    time = np.ceil(rng.exponential(draw(st.floats(3, 80)), n)).clip(1, horizon)
    event = (time < horizon) & (rng.random(n) < draw(st.floats(0.3, 1.0)))
    groups = rng.choice(["a", "b", "c"][:draw(st.integers(1, 3))], n)
    return time, event, groups, draw(st.sampled_from(sorted(PROFILES)))


@settings(max_examples=150, deadline=None)
@given(follow_up())
def test_every_shown_survival_count_is_clear_and_true(case):
    time, event, groups, name = case
    rules = PROFILES[name]
    km = kaplan_meier(time, event, group=groups)
    released = released_survival(km, name)
    for group, steps in released.groupby("group"):
        chosen = groups == group
        t, e = time[chosen], event[chosen]
        survival = 1.0
        for step in steps.itertuples():
            for count in (step.at_risk, step.events, step.censored):
                assert not rules.hides(count), (name, step)
            inside = (t > step.start) & (t <= step.time) if step.start > 0 else (t <= step.time)
            if rules.rounding == 1:
                assert step.events == (inside & e).sum() and step.censored == (inside & ~e).sum()
                assert step.at_risk == (t > step.start).sum() if step.start > 0 else step.at_risk == len(t)
            survival *= 1 - step.events / step.at_risk
            assert np.isclose(step.survival, max(survival, 0.0))
            if len(np.unique(t[inside])) == 1 and rules.rounding == 1:  # one time: its counts are the step's
                assert not rules.hides((inside & e).sum()) and not rules.hides((inside & ~e).sum())
        last = steps.iloc[-1]
        remaining = max(last.at_risk - last.events - last.censored, 0)
        assert not rules.hides(remaining), (name, last)
        if rules.rounding == 1:
            assert remaining == (t > last.time).sum()


def test_a_large_cohort_gets_a_curve_under_every_profile_close_to_kaplan_meier():
    rng = np.random.default_rng(2)
    time = np.ceil(rng.exponential(40, 600)).clip(1, 90)
    event = (time < 90) & (rng.random(600) < 0.7)  # dropouts censored along the way: OpenSAFELY hides a 0 too
    km = kaplan_meier(time, event)
    for name in PROFILES:
        released = released_survival(km, name)
        assert len(released) >= 3, name
        exact = km.set_index("time").survival
        for step in released.itertuples():  # the coarser curve stays near the exact one at its step ends
            assert abs(step.survival - exact.loc[step.time]) < 0.05, (name, step)
    # 15 persons left at the end is a hidden count under All of Us: the curve stops before it
    few = np.r_[np.arange(1, 61).repeat(1), [90] * 15]
    released = released_survival(kaplan_meier(few, few < 90), "aou")
    last = released.iloc[-1]
    assert last.time < 90 and last.at_risk - last.events - last.censored > 20
