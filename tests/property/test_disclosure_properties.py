"""Disclosure control holds for random cohorts, groupings and profiles: every count a ``public``
reader gets is 0 or clear of the profile's hidden range (rounded as the profile says), and no hidden
count can be solved for, or a small one narrowed to less than half the hidden range, from
everything shown on the same page.

The attacker here is written independently of the module: it reads only the text shown, turns
it into integer constraints and asks an integer programme (scipy's MILP, exact, where the module
audits with linear programmes) for the least and greatest value of each hidden count.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import optimize

from explorer.privacy.disclosure import COMPLEMENTARY_LABEL, PROFILES, DisclosureControl

DIMS = {"age_band": ["18-39", "40-64", "65+"], "sex": ["f", "m"], "race": ["a", "b", "c", "d"]}


@st.composite
def cohorts(draw):
    dims = draw(st.lists(st.sampled_from(sorted(DIMS)), min_size=1, max_size=3, unique=True))
    n = draw(st.integers(0, 150))
    skew = {d: draw(st.lists(st.integers(1, 30), min_size=len(DIMS[d]), max_size=len(DIMS[d]))) for d in dims}
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows = pd.DataFrame({d: rng.choice(DIMS[d], n, p=np.array(skew[d]) / sum(skew[d])) for d in dims})
    # a page: some of the groupings of these dims, the finest among them, often the total
    subsets = [tuple(c) for k in range(len(dims) + 1) for c in itertools.combinations(dims, k)]
    page = draw(st.lists(st.sampled_from(subsets), min_size=1, max_size=len(subsets), unique=True))
    return rows, page, draw(st.sampled_from(sorted(PROFILES)))


def attacker_bounds(rows, page, release, rules):
    """For each hidden count on the page: the least and greatest whole value consistent with
    every shown text. Unknowns: the count of each combination of levels seen on the page."""
    dims = list(dict.fromkeys(d for g in page for d in g))
    levels = {d: sorted(set().union(*[set(release.table(*g)[d]) for g in page if d in g])) for d in dims}
    cells = list(itertools.product(*[levels[d] for d in dims]))
    rows_a, low, high, hidden = [], [], [], []
    for grouping in page:
        for record in release.table(*grouping).to_dict("records"):
            if record["status"] == "recomputed":  # a sum of rounded counts shown elsewhere: no news
                continue
            member = np.array([all(cell[dims.index(d)] == record[d] for d in grouping) for cell in cells], dtype=float)
            text = record["shown"]
            if text == rules.label:
                bounds = (rules.smallest_hidden, rules.largest_hidden)
            elif text == COMPLEMENTARY_LABEL:
                bounds = (rules.largest_hidden + 1, np.inf)
            else:
                value = int(text)
                half = (rules.rounding - 1) // 2
                bounds = (max(value - half, 0), value + half)
            rows_a.append(member), low.append(bounds[0]), high.append(bounds[1])
            if text in (rules.label, COMPLEMENTARY_LABEL):
                hidden.append((grouping, record, member))
    if not hidden:
        return []
    constraint = optimize.LinearConstraint(np.array(rows_a), np.array(low, float), np.array(high, float))
    out = []
    for grouping, record, member in hidden:
        ends = []
        for sign in (1, -1):
            result = optimize.milp(sign * member, constraints=[constraint], integrality=np.ones(len(cells)),
                                   bounds=optimize.Bounds(0, np.inf))
            # the true counts satisfy every constraint, so "infeasible or unbounded" (3, 4) is
            # unbounded, and only the greatest value can be
            assert result.status == 0 or (sign == -1 and result.status in (3, 4)), result.message
            ends.append(sign * result.fun if result.status == 0 else np.inf)
        out.append((grouping, record, ends[0], ends[1]))
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cohorts())
def test_no_hidden_count_can_be_solved_for(case):
    rows, page, name = case
    control = DisclosureControl(profile=name)
    rules = control.rules
    release = control.counts(rows, page)
    for grouping in page:
        table = release.table(*grouping)
        true = rows.groupby(list(grouping)).size() if grouping else pd.Series([len(rows)])
        for record in table.to_dict("records"):
            n = true.get(tuple(record[d] for d in grouping) if len(grouping) > 1 else record[grouping[0]], 0) \
                if grouping else len(rows)
            if record["status"] == "recomputed":
                assert record["shown"] == rules.label or int(record["shown"]) % rules.rounding == 0
            elif record["status"] in ("shown", "rounded"):
                value = int(record["shown"])
                assert not rules.hides(n)
                assert value == 0 or value > rules.largest_hidden
                assert value % rules.rounding == 0 and abs(value - n) <= rules.rounding // 2
            else:
                assert np.isnan(record["count"])
                assert (record["status"] == "primary") == rules.hides(n)
    # a small hidden count keeps a range at least half the hidden range wide; any hidden one, two values
    wide = max(1, -(-(rules.largest_hidden - rules.smallest_hidden) // 2))
    everything_hidden = all((release.table(*g)["status"].isin(["primary", "complementary", "recomputed"])
                             | (release.table(*g)["count"] == 0)).all() for g in page)  # nothing left to hide
    for grouping, record, low, high in attacker_bounds(rows, page, release, rules):
        if everything_hidden:
            continue  # the labels alone and the zeros shown say this much (known limit: zeros are shown)
        assert high - low >= 1, (grouping, record, low, high)
        if record["status"] == "primary":
            assert high - low >= wide, (grouping, record, low, high)


@settings(max_examples=40, deadline=None)
@given(cohorts(), st.integers(0, 10**6))
def test_statistics_and_percentages_only_of_shown_groups(case, seed):
    rows, page, name = case
    control = DisclosureControl(profile=name)
    by = list(page[0]) or [rows.columns[0]]
    rows = rows.assign(value=np.random.default_rng(seed).normal(size=len(rows)))
    stats = control.statistics(rows, by, "value")
    assert stats.loc[stats["status"] == "primary", ["mean", "p25", "p50", "p75"]].isna().all().all()
    sizes = rows.groupby(by).size()
    for record in stats[stats["mean"].notna()].to_dict("records"):
        key = tuple(record[c] for c in by) if len(by) > 1 else record[by[0]]
        assert sizes[key] >= control.rules.minimum_shown
    percent = control.percentages(control.counts(rows, [tuple(by)]).table(*by))
    table = control.counts(rows, [tuple(by)]).table(*by)
    assert percent[table["count"].isna()].isna().all()
    if table["count"].notna().all() and table["count"].sum() > 0:
        assert abs(percent.sum() - 100) < 1e-9
