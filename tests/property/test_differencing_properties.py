"""Linked pages hold for random data and every profile: nested groups (a cohort inside the
lake) and a calendar of days linked by the persons moving between them. An integer-programme
attacker reading only the text shown, and knowing the links (inside plus outside is the lake;
today is yesterday plus those who came less those who left; a move that did not happen is known
not to have), can neither pin a hidden count nor narrow a small count it derives (the persons
outside the cohort with a level, those who entered a heat wave on a day) to less than half the
hidden range.

The attacker is written from the pages' meaning, not the module (scipy's MILP, exact, where the
module audits with linear programmes)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import optimize

from explorer.privacy.disclosure import COMPLEMENTARY_LABEL, PROFILES, DisclosureControl, LinkedPage
from explorer.views.exposure import day_states, protect_calendar


def text_bounds(text, rules):
    if text in ("", None):
        return None
    if text == rules.label:
        return rules.smallest_hidden, rules.largest_hidden
    if text == COMPLEMENTARY_LABEL:
        return rules.largest_hidden + 1, np.inf
    half = (rules.rounding - 1) // 2
    return max(int(text) - half, 0), int(text) + half


class Attacker:
    def __init__(self):
        self.names, self.rows, self.low, self.high = {}, [], [], []

    def var(self, name):
        return self.names.setdefault(name, len(self.names))

    def bound(self, names, text, rules):
        found = text_bounds(text, rules)
        if found is not None:
            self.rows.append({self.var(n): 1.0 for n in names})
            self.low.append(found[0])
            self.high.append(found[1])

    def equal(self, plus, minus):
        row = {}
        for n, sign in [(n, 1.0) for n in plus] + [(n, -1.0) for n in minus]:
            row[self.var(n)] = row.get(self.var(n), 0.0) + sign
        self.rows.append(row)
        self.low.append(0.0)
        self.high.append(0.0)

    def range(self, names):
        a = np.zeros((len(self.rows), len(self.names)))
        for i, row in enumerate(self.rows):
            for j, v in row.items():
                a[i, j] = v
        constraint = optimize.LinearConstraint(a, np.array(self.low, float), np.array(self.high, float))
        c = np.zeros(len(self.names))
        for n in names:
            c[self.var(n)] += 1
        ends = []
        for sign in (1, -1):
            result = optimize.milp(sign * c, constraints=[constraint], integrality=np.ones(len(c)),
                                   bounds=optimize.Bounds(0, np.inf))
            assert result.status == 0 or (sign == -1 and result.status in (3, 4)), result.message
            ends.append(sign * result.fun if result.status == 0 else np.inf)
        return ends


def wide(rules):
    return max(1, -(-(rules.largest_hidden - rules.smallest_hidden) // 2))


# ---------------------------------------------------------------------------------- containment
@st.composite
def containments(draw):
    """A cohort inside a lake: per feature, the persons inside and outside by level (the last
    level is a missing value), often with few outside."""
    outside = draw(st.one_of(st.integers(0, 3), st.integers(0, 25)))
    inside = draw(st.integers(0, 120))
    features = []
    for _ in range(draw(st.integers(1, 2))):
        levels = draw(st.integers(2, 4))
        split = []
        for size in (inside, outside):
            weights = np.array(draw(st.lists(st.integers(0, 9), min_size=levels + 1, max_size=levels + 1))) + 0.01
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            split.append(np.bincount(rng.choice(levels + 1, size, p=weights / weights.sum()), minlength=levels + 1))
        features.append(np.array(split))  # 2 x (levels + missing)
    return inside, outside, features, draw(st.sampled_from(sorted(PROFILES)))


def containment_page(inside, outside, features, control):
    """What a characterisation of the cohort beside the lake publishes, as the cohorts page
    builds it: sizes, and per feature each level and the persons with a value, of both."""
    page = LinkedPage()
    sizes = page.cells([inside, outside])
    total = control.lone(inside + outside)
    shown = {"lake size": page.count(sizes, fact=total), "cohort size": page.count([sizes[0]])}
    page.count([sizes[1]], published=False)
    for f, split in enumerate(features):
        cells = [page.cells(split[m]) for m in (0, 1)]
        for m in (0, 1):
            page.link(cells[m], [sizes[m]])
            for c in cells[m]:
                page.count([c], published=False)
        levels = split.shape[1] - 1
        for level in range(levels + 1):
            published = level < levels
            shown[f, "cohort", level] = page.count([cells[0][level]], published=published)
            shown[f, "lake", level] = page.count([cells[0][level], cells[1][level]], published=published)
        shown[f, "cohort", "n"] = page.count(cells[0][:levels])
        shown[f, "lake", "n"] = page.count(list(cells[0][:levels]) + list(cells[1][:levels]))
    return page, shown


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(containments())
def test_nobody_outside_a_cohort_can_be_narrowed(case):
    inside, outside, features, name = case
    control = DisclosureControl(profile=name)
    rules = control.rules
    page, entries = containment_page(inside, outside, features, control)
    release = control.protect(page)
    text = {key: release.text(k) for key, k in entries.items()}
    for key, value in text.items():  # nothing shown in the hidden range
        if value not in ("", rules.label, COMPLEMENTARY_LABEL):
            assert int(value) == 0 or int(value) > rules.largest_hidden, (key, value)
    attack = Attacker()
    attack.bound([("in",), ("out",)], text["lake size"], rules)
    attack.bound([("in",)], text["cohort size"], rules)
    truth = {("out",): outside}
    for f, split in enumerate(features):
        levels = split.shape[1] - 1
        for m, side in enumerate(("in", "out")):
            attack.equal([(f, side, level) for level in range(levels + 1)], [(side,)])
            for level in range(levels + 1):
                truth[(f, side, level)] = split[m, level]
        for level in range(levels):
            attack.bound([(f, "in", level)], text[f, "cohort", level], rules)
            attack.bound([(f, "in", level), (f, "out", level)], text[f, "lake", level], rules)
        attack.bound([(f, "in", level) for level in range(levels)], text[f, "cohort", "n"], rules)
        attack.bound([(f, s, level) for s in ("in", "out") for level in range(levels)], text[f, "lake", "n"], rules)
    everything_hidden = all(t in ("", rules.label, COMPLEMENTARY_LABEL, "0") or key == "lake size" for key, t in text.items())
    for cell, n in truth.items():
        if cell[-2:-1] == ("in",) or not (cell == ("out",) or cell[1] == "out") or not rules.hides(n):
            continue
        low, high = attack.range([cell])
        assert low <= n <= high
        if everything_hidden and high - low < wide(rules):
            continue  # the labels, zeros and the lake's total alone say this much
        assert high - low >= wide(rules), (name, inside, outside, cell, n, low, high, text)


# ---------------------------------------------------------------------------------- calendars
@st.composite
def calendars(draw):
    """Persons in a few areas over a few days: each area's heat waves (the weather), and days
    some persons are not counted (no known home)."""
    n_days = draw(st.integers(2, 9))
    areas = draw(st.integers(1, 3))
    people = draw(st.lists(st.integers(0, 25), min_size=areas, max_size=areas))
    waves = np.array(draw(st.lists(st.lists(st.booleans(), min_size=n_days, max_size=n_days),
                                   min_size=areas, max_size=areas)))
    rows = []
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    absent = draw(st.sampled_from([0.0, 0.05, 0.3]))
    for a, count in enumerate(people):
        for p in range(count):
            for d in range(n_days):
                if rng.random() >= absent:
                    rows.append({"person_id": f"{a}-{p}", "date": pd.Timestamp("2024-07-01") + pd.Timedelta(days=d),
                                 "heat_wave": bool(waves[a, d])})
    rows = pd.DataFrame(rows, columns=["person_id", "date", "heat_wave"])
    never = draw(st.integers(0, 3))  # persons of the lake never counted
    return rows, sum(people) + never, draw(st.sampled_from(sorted(PROFILES)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calendars())
def test_no_move_between_days_can_be_narrowed(case):
    rows, everyone, name = case
    if rows.empty:
        return
    control = DisclosureControl(profile=name)
    rules = control.rules
    frame = rows.groupby("date").agg(persons=("heat_wave", "size"), in_heat_wave=("heat_wave", "sum")).reset_index()
    total = control.lone(everyone)
    shown = protect_calendar(frame, rows, control, total)
    for column in ("persons_shown", "in_heat_wave_shown"):
        for value in shown[column]:
            if value not in (rules.label, COMPLEMENTARY_LABEL):
                assert int(value) == 0 or int(value) > rules.largest_hidden
    states, persons = day_states(frame, rows)
    stock = ["in", "out", "away"]
    attack = Attacker()
    for d in range(len(frame)):
        attack.bound([(d, "in")], shown.at[d, "in_heat_wave_shown"], rules)
        attack.bound([(d, "in"), (d, "out")], shown.at[d, "persons_shown"], rules)
        attack.bound([(d, "in"), (d, "out"), (d, "away")], total.shown, rules)
    moves = {}
    for d in range(len(frame) - 1):
        counts = np.bincount(3 * states[:, d] + states[:, d + 1], minlength=9).reshape(3, 3)
        counts[2, 2] += everyone - len(persons)
        for i, j in itertools.product(range(3), repeat=2):
            if i == j or counts[i, j]:
                moves[d, stock[i], stock[j]] = counts[i, j]
        for i in range(3):
            attack.equal([("m",) + k for k in moves if k[0] == d and k[1] == stock[i]], [(d, stock[i])])
            attack.equal([("m",) + k for k in moves if k[0] == d and k[2] == stock[i]], [(d + 1, stock[i])])
    # nothing left to hide: the labels, the zeros and the lake's total (a fact of every page)
    # alone say this much ("suppressed" is above the hidden range: 11 of a total of 12 leaves 1)
    everything_hidden = all(v in (rules.label, COMPLEMENTARY_LABEL, "0") for c in ("persons_shown", "in_heat_wave_shown")
                            for v in shown[c])
    groups = [[k] for k in moves if k[1] != k[2]]
    for d in range(len(frame) - 1):
        for state in stock:
            groups.append([k for k in moves if k[0] == d and k[2] == state and k[1] != state])  # came into it
            groups.append([k for k in moves if k[0] == d and k[1] == state and k[2] != state])  # left it
    for group in groups:
        n = sum(moves[k] for k in group)
        if not group or not rules.hides(n):
            continue
        low, high = attack.range([("m",) + k for k in group])
        assert low <= n <= high
        if everything_hidden and high - low < wide(rules):
            continue
        assert high - low >= wide(rules), (name, group, n, low, high)
    for d in range(len(frame)):  # and no hidden day can be solved for
        for names, column in (([(d, "in")], "in_heat_wave_shown"), ([(d, "in"), (d, "out")], "persons_shown")):
            text = shown.at[d, column]
            if text in (rules.label, COMPLEMENTARY_LABEL) and not everything_hidden:
                low, high = attack.range(names)
                assert high - low >= (wide(rules) if text == rules.label else 1), (name, d, column, low, high)
