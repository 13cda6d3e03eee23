"""A reader of every table a federated Table 1 releases (each site's, under the stricter of its own
and the study's profile, and the pooled one) learns no more of a hidden count than its own site's
release allows: the MILP attacker, now with every site's cells as unknowns and every pooled count
as an exact equation across sites, still finds each primary-hidden count at least two whole values
wide, for random sites, populations and profiles."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import optimize

from explorer.federation.policy import stricter
from explorer.federation.pooling import pool_table_one
from explorer.privacy.disclosure import COMPLEMENTARY_LABEL, PROFILES, DisclosureControl
from explorer.privacy.table_one import MISSING, released_table_one, table_one_page

MISSING_AGE = f"age {MISSING}"


@st.composite
def studies(draw):
    sites = {}
    for k in range(draw(st.integers(2, 3))):
        n = draw(st.integers(5, 70))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        frame = pd.DataFrame({"group": rng.choice(["a", "b"], n), "age": rng.normal(60, 10, n),
                              "race": rng.choice(["w", "x", "y"], n, p=[0.7, 0.2, 0.1])})
        frame.loc[rng.random(n) < 0.15, "age"] = np.nan
        sites[f"site{k}"] = (frame, draw(st.sampled_from(sorted(PROFILES))))
    return sites, draw(st.sampled_from(sorted(PROFILES)))


def _bounds(text: str, rules):
    if text == rules.label:
        return rules.smallest_hidden, rules.largest_hidden
    if text == COMPLEMENTARY_LABEL:
        return rules.largest_hidden + 1, np.inf
    value = int(text.replace(",", ""))
    half = (rules.rounding - 1) // 2
    return max(value - half, 0), value + half


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(studies())
def test_pooled_and_per_site_tables_together_pin_no_hidden_count(case):
    sites, study_profile = case
    dims = ["group", "race", MISSING_AGE]
    levels = {"group": ["a", "b"], "race": ["w", "x", "y", MISSING], MISSING_AGE: ["no", "yes"]}
    cells = list(itertools.product(*levels.values()))
    names = list(sites)
    unknowns = len(names) * len(cells)
    rows, low, high, hidden, released, shown_counts, rounding = [], [], [], [], {}, {}, {}

    def member(site_index, record, grouping):
        vector = np.zeros(unknowns)
        for j, cell in enumerate(cells):
            if all(cell[dims.index(d)] == record[d] for d in grouping):
                vector[site_index * len(cells) + j] = 1
        return vector

    for s, name in enumerate(names):
        frame, own = sites[name]
        control = DisclosureControl(profile=stricter(own, study_profile))
        rules = control.rules
        rounding[name] = rules.rounding > 1
        table = released_table_one(frame, "group", continuous=["age"], categorical=["race"], control=control)
        released[name] = {"groups": sorted(frame.group.unique()),
                          "table": table.astype(object).where(table.notna(), None).to_dict("records")}
        page_rows, page = table_one_page(frame, "group", ["age"], ["race"])
        release = control.counts(page_rows, page)
        seen = set()
        for grouping in page:
            for record in release.table(*grouping).to_dict("records"):
                seen.add(tuple(record[d] for d in grouping))
                shown_counts[(name, *(record[d] for d in grouping))] = record["count"]
                if record["status"] == "recomputed":
                    continue
                vector = member(s, record, grouping)
                lo, hi = _bounds(record["shown"], rules)
                rows.append(vector), low.append(lo), high.append(hi)
                if record["status"] == "primary":
                    hidden.append((name, grouping, record, vector))
        for grouping in page[1:]:  # a level the site never shows has no persons there
            for level in levels[grouping[1]]:
                for group in levels["group"]:
                    if (group, level) not in seen:
                        rows.append(member(s, {"group": group, grouping[1]: level}, grouping)), low.append(0), high.append(0)

    pooled = pool_table_one(released)
    for record in pooled.to_dict("records"):
        if record["variable"] == "n":
            grouping, key = ("group",), {}
        elif record["variable"] == "race" and record["statistic"] in ("n (%)", "missing"):
            grouping, key = ("group", "race"), {"race": record["level"] if record["statistic"] == "n (%)" else MISSING}
        elif record["variable"] == "age" and record["statistic"] == "missing":
            grouping, key = ("group", MISSING_AGE), {MISSING_AGE: "yes"}
        else:
            continue
        for group in ("a", "b"):
            value = record.get(f"{group}|n")
            if value is None or not np.isfinite(value):
                continue
            # a pooled count is the exact sum of the sites' counts as shown: a rounded site's shown
            # count is a number the reader has already; the others are their cells' sums
            known = sum(shown_counts.get((n, group, *key.values()), 0.0) for n in names if rounding[n])
            vector = sum(member(s, {"group": group, **key}, grouping) for s, n in enumerate(names) if not rounding[n])
            if isinstance(vector, np.ndarray):
                rows.append(vector), low.append(value - known), high.append(value - known)

    constraint = optimize.LinearConstraint(np.array(rows), np.array(low, float), np.array(high, float))
    for name, grouping, record, vector in hidden:
        ends = []
        for sign in (1, -1):
            result = optimize.milp(sign * vector, constraints=[constraint], integrality=np.ones(unknowns),
                                   bounds=optimize.Bounds(0, np.inf))
            assert result.status == 0 or (sign == -1 and result.status in (3, 4)), result.message
            ends.append(sign * result.fun if result.status == 0 else np.inf)
        assert ends[1] - ends[0] >= 1, (name, grouping, record, ends)
