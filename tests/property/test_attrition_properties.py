"""Protected attrition tables hold for random chains of counts and every profile: each count a
``public`` reader gets (persons remaining, persons removed by a step) is 0 or clear of the
hidden range, and an integer-programme attacker reading only the text shown can neither pin a
hidden count nor narrow a small one to less than half the hidden range.

The attacker is written from the table's meaning, not the module: unknowns are the persons
removed at each step and the persons kept; remaining after step k is the sum of the later ones."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import optimize

from explorer.privacy.disclosure import COMPLEMENTARY_LABEL, PROFILES, DisclosureControl


@st.composite
def chains(draw):
    start = draw(st.integers(0, 600))
    counts = [start]
    for _ in range(draw(st.integers(1, 7))):
        # steps that remove nobody, a few, or many people, as real criteria do
        removed = draw(st.one_of(st.just(0), st.integers(1, 25), st.integers(0, counts[-1])))
        counts.append(max(0, counts[-1] - removed))
    return counts, draw(st.sampled_from(sorted(PROFILES)))


def bounds(text: str, rules) -> tuple[float, float]:
    if text == rules.label:
        return rules.smallest_hidden, rules.largest_hidden
    if text == COMPLEMENTARY_LABEL:
        return rules.largest_hidden + 1, np.inf
    half = (rules.rounding - 1) // 2
    return max(int(text) - half, 0), int(text) + half


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains())
def test_no_hidden_attrition_count_can_be_solved_for(case):
    counts, name = case
    control = DisclosureControl(profile=name)
    rules = control.rules
    table = control.attrition(counts)
    n = len(counts)
    rows, low, high, hidden = [], [], [], []
    for k in range(n):
        published = [("persons", k, np.r_[np.zeros(k), np.ones(n - k)], counts[k])]
        if k:
            published.append(("removed", k, np.eye(n)[k - 1], counts[k - 1] - counts[k]))
        for column, step, member, truth in published:
            text, status = table.at[k, f"{column}_shown"], table.at[k, f"{column}_status"]
            if status in ("shown", "rounded"):
                assert int(text) == 0 or int(text) > rules.largest_hidden, (column, step, text)
                assert abs(int(text) - truth) <= rules.rounding // 2
            else:
                assert (status == "primary") == rules.hides(truth)
                hidden.append((column, step, member, status))
            lo, hi = bounds(text, rules)
            rows.append(member), low.append(lo), high.append(hi)
    if not hidden:
        return
    constraint = optimize.LinearConstraint(np.array(rows), np.array(low, float), np.array(high, float))
    wide = max(1, -(-(rules.largest_hidden - rules.smallest_hidden) // 2))
    everything_hidden = all(table.at[k, f"{c}_status"] in ("primary", "complementary") or table.at[k, f"{c}_shown"] == "0"
                            for k in range(n) for c in (["persons", "removed"] if k else ["persons"]))
    for column, step, member, status in hidden:
        ends = []
        for sign in (1, -1):
            result = optimize.milp(sign * member, constraints=[constraint], integrality=np.ones(n),
                                   bounds=optimize.Bounds(0, np.inf))
            assert result.status == 0 or (sign == -1 and result.status in (3, 4)), result.message
            ends.append(sign * result.fun if result.status == 0 else np.inf)
        if everything_hidden:
            continue  # the labels and zeros alone say this much (a known limit of showing zeros)
        assert ends[1] - ends[0] >= 1, (counts, column, step, ends)
        if status == "primary":
            assert ends[1] - ends[0] >= wide, (counts, name, column, step, ends)


def test_a_step_removing_a_few_people_is_hidden_with_a_neighbour():
    table = DisclosureControl(profile="aou").attrition([400, 398, 300])
    assert table.at[1, "removed_shown"] == "<=20"
    assert (table.loc[[0, 1], "persons_status"] == ["shown", "complementary"]).all()
    assert table.at[2, "persons_shown"] == "300"  # the rest of the chain stays readable
