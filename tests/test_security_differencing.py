"""Differencing attacks on the public pages (issue 27, findings 2 and 3), replayed by an
integer-programme attacker that reads only the text a public reader gets.

* A saved cohort beside the whole lake: the lake's counts less the cohort's are the persons
  outside it. Lake of 150: a cohort of 138 (12 outside) and one of 149 (one outside).
* The heat-wave calendar: adjacent days count the same persons, so two shown days give the few
  who entered a heat wave; here one person of a ZIP3 enters one on day 8.
* The lake's total: one string on every public page (overview, attrition, characterisation,
  data quality), so no page shows what another hides.

The attacker is written from the pages' meaning, not the module: unknowns are the persons in
each finest group (inside/outside the cohort by feature level; per day in a heat wave, out of
one, or not counted, and the moves between days), with the links a reader knows (inside plus
outside is the lake; today is yesterday plus those who came less those who left; the moves the
public weather rules out are zero), and each shown text bounds a sum of them. For every small
count the page does not show (a cell of the persons outside, a move between two days) and every
hidden count, scipy's MILP finds the least and greatest whole value.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import explorer
from explorer import cohorts
from explorer.privacy import DisclosureControl
from explorer.privacy.disclosure import COMPLEMENTARY_LABEL

PROFILES = ["aou", "cms", "ukbiobank", "opensafely"]
FEATURES = {"sex at birth": "sex_at_birth", "race": "race", "ethnicity": "ethnicity"}
MISSING = "(missing)"


def text_bounds(text: str, rules) -> tuple[float, float] | None:
    """What a shown text says of its count (None: nothing)."""
    if text in ("", None):
        return None
    if text == rules.label:
        return rules.smallest_hidden, rules.largest_hidden
    if text == COMPLEMENTARY_LABEL:
        return rules.largest_hidden + 1, np.inf
    half = (rules.rounding - 1) // 2
    return max(int(text) - half, 0), int(text) + half


class Attacker:
    """Whole non-negative unknowns, bounded sums of them, and equations."""

    def __init__(self):
        self.names: dict = {}
        self.rows, self.low, self.high = [], [], []

    def var(self, name) -> int:
        return self.names.setdefault(name, len(self.names))

    def bound(self, names, text, rules, minus=()):
        found = text_bounds(text, rules)
        if found is not None:
            self.rows.append(({self.var(n): 1.0 for n in names} | {self.var(n): -1.0 for n in minus}))
            self.low.append(found[0])
            self.high.append(found[1])

    def equal(self, plus, minus):
        row = {}
        for n in plus:
            row[self.var(n)] = row.get(self.var(n), 0) + 1.0
        for n in minus:
            row[self.var(n)] = row.get(self.var(n), 0) - 1.0
        self.rows.append(row)
        self.low.append(0.0)
        self.high.append(0.0)

    def fix(self, name, value):
        self.rows.append({self.var(name): 1.0})
        self.low.append(value)
        self.high.append(value)

    def range(self, names) -> tuple[float, float]:
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
            # the true counts satisfy every constraint: "infeasible or unbounded" is unbounded
            assert result.status == 0 or (sign == -1 and result.status in (3, 4)), result.message
            ends.append(sign * result.fun if result.status == 0 else np.inf)
        return ends[0], ends[1]


def wide(rules) -> int:
    return max(1, -(-(rules.largest_hidden - rules.smallest_hidden) // 2))


# ------------------------------------------------------------------------ a cohort beside the lake
@pytest.fixture(scope="module")
def containment_lake(tmp_path_factory):
    """150 persons (person table only): 12 in ZIP3 999, one of race NHPI; cohort "most" leaves
    out ZIP3 999 (138 members), "all-but-one" leaves out the one (149), "most-but-one" both
    (137, inside each of the others); a data-quality report and modality coverage over all 150."""
    from datetime import date

    root = tmp_path_factory.mktemp("containment") / "lake"
    lake = explorer.open(root)
    rng = np.random.default_rng(27)
    n = 150
    persons = pd.DataFrame({
        "person_id": [f"p{i:03d}" for i in range(n)],
        "year_of_birth": rng.integers(1940, 2000, n).astype("int32"),
        "sex_at_birth": rng.choice(["female", "male"], n),
        "race": rng.choice(["White", "Black or African American", "Asian", "Other"], n, p=[.5, .2, .15, .15]),
        "ethnicity": rng.choice(["Hispanic or Latino", "Not Hispanic or Latino"], n, p=[.3, .7]),
        "zip3": rng.choice(["021", "100", "606"], n),
    })
    persons.loc[:11, "zip3"] = "999"
    persons.loc[149, "race"] = "Native Hawaiian or Other Pacific Islander"
    lake.write("person", persons, mode="overwrite")
    fixed = "index_date: {rule: fixed, date: 2024-01-01}\n"
    cohorts.save(lake, cohorts.loads(f"name: most\n{fixed}exclusion: [{{kind: demographics, zip3: ['999']}}]\n"))
    cohorts.save(lake, cohorts.loads(f"name: all-but-one\n{fixed}exclusion: [{{kind: demographics, race: "
                                     "['Native Hawaiian or Other Pacific Islander']}]\n"))
    cohorts.save(lake, cohorts.loads(f"name: most-but-one\n{fixed}exclusion: [{{kind: demographics, zip3: ['999']}}, "
                                     "{kind: demographics, race: ['Native Hawaiian or Other Pacific Islander']}]\n"))
    lake.write("dq_result", pd.DataFrame({
        "ingest_id": ["a"] * 2, "check_id": ["person_birth_missing", "lab_si_missing"], "category": ["completeness"] * 2,
        "table_name": ["person", "measurement"], "description": ["persons without a year of birth", "no SI"],
        "numerator": [0, 40], "denominator": [n, 2000], "threshold_pct": [1.0, 5.0], "pct": [0.0, 2.0],
        "passed": [True, True]}))
    lake.write("modality_coverage", pd.DataFrame({
        "modality": ["labs", "steps"], "persons_with_data": [150, 149], "person_days": [900, 4000],
        "median_days_per_person": [3.0, 27.0], "first_day": [date(2024, 1, 1)] * 2, "last_day": [date(2024, 3, 1)] * 2}))
    return lake


def characterisation_attacker(lake, name: str, profile: str, against: str = ""):
    """The attacker's programme for cohort ``name`` beside the whole lake (or beside the saved
    cohort ``against`` that holds it), from the public characterisation, the cohort's public
    attrition and the overview; and the truth. "in" is the cohort, "out" the rest of the other
    group."""
    from explorer.views import CohortAttrition, CohortCharacterisation, DemographicCounts

    control = DisclosureControl(profile=profile)
    rules = control.rules
    table = CohortCharacterisation(lake=lake, cohort=name, against=against, role="public", disclosure=control).data()
    exact = CohortCharacterisation(lake=lake, cohort=name, against=against).data()
    attrition = CohortAttrition(lake=lake, definition=cohorts.get(lake, name), role="public", disclosure=control).data()
    attack = Attacker()
    sizes = table.attrs["sizes_shown"]
    attack.bound([("size", "in")], sizes[0], rules)
    attack.bound([("size", "in"), ("size", "out")], sizes[1], rules)
    truth = {}
    for text, feature in FEATURES.items():
        rows = table[table["feature"] == text]
        levels = list(rows["level"]) + [MISSING]
        for side in ("in", "out"):  # each side's levels sum to its size
            attack.equal([(feature, side, level) for level in levels], [("size", side)])
        for k, sides in ((1, ["in"]), (2, ["in", "out"])):
            attack.bound([(feature, s, level) for s in sides for level in levels[:-1]], rows["n_1_shown" if k == 1 else
                                                                                         "n_2_shown"].iloc[0], rules)
            for record in rows.to_dict("records"):
                attack.bound([(feature, s, record["level"]) for s in sides], record[f"count_{k}_shown"], rules)
        for record in exact[exact["feature"] == text].to_dict("records"):
            truth[(feature, "out", record["level"])] = record["count_2"] - record["count_1"]
        # the overview shows the lake's persons by the same characteristic
        if not against:
            overview = DemographicCounts(lake=lake, by=feature, role="public", disclosure=control).data()
            for record in overview.to_dict("records"):
                level = MISSING if record[feature] == "unknown" else record[feature]
                attack.bound([(feature, s, level) for s in ("in", "out")], record["shown"], rules)
    # the attrition: persons removed at each step, the cohort what is left
    steps = len(attrition)
    for k in range(steps):
        attack.bound([("removed", j) for j in range(k + 1, steps)] + [("size", "in")], attrition.at[k, "persons_shown"], rules)
        if k:
            attack.bound([("removed", k)], attrition.at[k, "removed_shown"], rules)
    if not against:
        attack.equal([("removed", j) for j in range(1, steps)], [("size", "out")])
    sizes = exact.attrs["sizes"]
    truth[("size", "out")] = sizes[1] - sizes[0]
    return attack, truth, table, rules


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name, outside", [("most", 12), ("all-but-one", 1)])
def test_a_cohort_beside_the_lake_gives_nobody_outside_it_away(containment_lake, name, outside, profile):
    attack, truth, table, rules = characterisation_attacker(containment_lake, name, profile)
    assert truth[("size", "out")] == outside
    small = {cell: n for cell, n in truth.items() if rules.hides(n)}
    assert small, "the attack needs small cells outside the cohort"
    for cell, n in small.items():
        low, high = attack.range([cell])
        assert low <= n <= high
        assert high - low >= 1, (profile, name, cell, n, low, high)  # never pinned
        assert high - low >= wide(rules), (profile, name, cell, n, low, high)  # nor narrowed below half the hidden range


@pytest.mark.parametrize("profile", ["aou", "opensafely"])
def test_a_cohort_beside_a_saved_cohort_holding_it_gives_nobody_between_away(containment_lake, profile):
    """Nested saved cohorts: "most-but-one" is "most" less one person; side by side, the
    difference of the columns would describe that person."""
    attack, truth, table, rules = characterisation_attacker(containment_lake, "most-but-one", profile, against="most")
    assert truth[("size", "out")] == 1
    for cell, n in truth.items():
        if rules.hides(n):
            low, high = attack.range([cell])
            assert low <= n <= high and high - low >= wide(rules), (profile, cell, n, low, high)


def test_without_protection_the_attack_pins_the_persons_outside(containment_lake):
    """The attack of finding 2 on the exact tables (what each column protected on its own gave
    away for the shown cells): the lake less the cohort is every cell of the 12 outside."""
    from explorer.views import CohortCharacterisation

    exact = CohortCharacterisation(lake=containment_lake, cohort="most").data()
    outside = (exact["count_2"] - exact["count_1"]).dropna()
    assert outside.sum() == 3 * 12  # sex, race and ethnicity of each of the 12
    assert exact.attrs["sizes"] == [138, 150]


def test_each_hidden_count_of_the_cohort_page_stays_open(containment_lake):
    attack, truth, table, rules = characterisation_attacker(containment_lake, "most", "aou")
    for text, feature in FEATURES.items():
        for record in table[table["feature"] == text].to_dict("records"):
            for k, sides in ((1, ["in"]), (2, ["in", "out"])):
                shown = record[f"count_{k}_shown"]
                if shown in (rules.label, COMPLEMENTARY_LABEL):
                    low, high = attack.range([(feature, s, record["level"]) for s in sides])
                    assert high - low >= (wide(rules) if shown == rules.label else 1), (feature, record["level"], k)


@pytest.mark.parametrize("profile", PROFILES)
def test_the_lake_total_is_one_string_on_every_public_page(containment_lake, tmp_path, profile):
    from explorer.privacy.counts import published_total
    from explorer.views import CohortAttrition, CohortCharacterisation, DataQualityReport, DemographicCounts

    control = DisclosureControl(profile=profile)
    for lake in (containment_lake, _small_lake(containment_lake, tmp_path)):
        expected = published_total(lake, control).shown
        overview = DemographicCounts(lake=lake, role="public", disclosure=control)
        shown = {"overview": overview.data().attrs["total_shown"],
                 "overview by sex": DemographicCounts(lake=lake, by="sex_at_birth", role="public",
                                                      disclosure=control).data().attrs["total_shown"]}
        assert expected in overview.title()
        for name in cohorts.saved(lake)["cohort"]:
            attrition = CohortAttrition(lake=lake, definition=cohorts.get(lake, name), role="public", disclosure=control).data()
            shown[f"attrition {name}"] = attrition.at[0, "persons_shown"]
            view = CohortCharacterisation(lake=lake, cohort=name, role="public", disclosure=control)
            table = view.data()
            # the cohort's size too is one count: the attrition's last row and the characterisation's
            assert table.attrs["sizes_shown"][0] == attrition["persons_shown"].iloc[-1], (name, profile)
            shown[f"characterisation {name}"] = table.attrs["sizes_shown"][1]
            shown[f"characterisation {name} (as displayed)"] = view.display_table(table).iloc[0]["whole lake"]
        quality = DataQualityReport(lake=lake, role="public", disclosure=control).data().set_index("check_id")
        shown["data quality"] = quality.loc["person_birth_missing", "denominator"]
        assert set(shown.values()) == {expected}, shown
    assert published_total(containment_lake, control).value == 150


def _small_lake(lake, tmp_path):
    """15 of the lake's persons with one saved cohort: a total in every profile's hidden range
    (but OpenSAFELY's, which rounds 15)."""
    root = tmp_path / "small"
    small = explorer.open(root)
    persons = lake.sql("SELECT * FROM person ORDER BY person_id").iloc[20:35].reset_index(drop=True)
    small.write("person", persons[["person_id", "year_of_birth", "sex_at_birth", "race", "ethnicity", "zip3"]],
                mode="overwrite")
    cohorts.save(small, cohorts.loads("name: women\nindex_date: {rule: fixed, date: 2024-01-01}\n"
                                      "inclusion: [{kind: demographics, sex_at_birth: [female]}]\n"))
    small.write("dq_result", pd.DataFrame({
        "ingest_id": ["a"], "check_id": ["person_birth_missing"], "category": ["completeness"], "table_name": ["person"],
        "description": ["persons without a year of birth"], "numerator": [0], "denominator": [15],
        "threshold_pct": [1.0], "pct": [0.0], "passed": [True]}))
    return small


def test_subsets_of_the_lake_do_not_give_the_rest_away(containment_lake):
    """Modality coverage and the data-quality report count some of the lake's persons: with the
    lake's total shown, the persons without steps (one) would be the total less those with."""
    from explorer.views import DataQualityReport, ModalityCoverage

    coverage = ModalityCoverage(lake=containment_lake, role="public").data().set_index("modality")
    assert coverage.loc["labs", "persons_shown"] == "150"  # everyone: nobody without labs
    assert coverage.loc["steps", "persons_shown"] == COMPLEMENTARY_LABEL  # 149 of 150 would give the one away
    quality = DataQualityReport(lake=containment_lake, role="public").data().set_index("check_id")
    assert quality.loc["person_birth_missing", "numerator"] == "0"
    assert quality.loc["lab_si_missing", "denominator"] == 2000  # results, not persons: not a count of persons


def test_the_overview_filters_are_one_page(containment_lake):
    """Persons of one sex are some of everyone: the counts of every filter state come from one
    protected page, so everyone less women less men (persons of another sex) is audited."""
    from explorer.views import DemographicCounts

    for by in ("race", "age_band", "zip3"):
        everyone = DemographicCounts(lake=containment_lake, by=by, role="public").data().set_index(by)
        women = DemographicCounts(lake=containment_lake, by=by, sex_at_birth="female", role="public").data().set_index(by)
        men = DemographicCounts(lake=containment_lake, by=by, sex_at_birth="male", role="public").data().set_index(by)
        for group in everyone.index:  # no group shown in all three states that the other two contradict
            counts = [frame.loc[group, "count"] if group in frame.index else 0 for frame in (everyone, women, men)]
            if all(c == c for c in counts):
                assert counts[0] == counts[1] + counts[2], (by, group)


# ------------------------------------------------------------------------------ the calendar
DAYS = pd.date_range("2024-07-01", periods=20, freq="D")


@pytest.fixture(scope="module")
def calendar_lake(tmp_path_factory):
    """60 persons in three ZIP3s: 30 in a heat wave on days 5-15, the one person of ZIP3 B
    enters it on day 8 (and leaves with the rest), 29 never; one person of A has no home on
    days 11-12."""
    lake = explorer.open(tmp_path_factory.mktemp("calendar") / "lake")
    persons = [f"q{i:02d}" for i in range(60)]
    area = ["A"] * 30 + ["B"] + ["C"] * 29
    lake.write("person", pd.DataFrame({"person_id": persons, "year_of_birth": np.full(60, 1970, dtype="int32"),
                                       "sex_at_birth": ["female", "male"] * 30, "race": "White",
                                       "ethnicity": "Not Hispanic or Latino", "zip3": area}), mode="overwrite")
    rows = []
    for person, where in zip(persons, area):
        for d, day in enumerate(DAYS):
            wave = (where == "A" and 5 <= d <= 15) or (where == "B" and 8 <= d <= 15)
            status = "gap" if person == "q00" and d in (11, 12) else "ok"
            rows.append({"person_id": person, "date": day.date(), "tasmax": 35.0 if wave else 25.0,
                         "tasmin": 24.0 if wave else 15.0, "pm25": 8.0, "tas_anomaly": 0.0, "heat_wave": wave,
                         "residence_status": status, "person_bucket": 0})
    lake.write("exposure_daily", pd.DataFrame(rows).astype({"person_bucket": "int32"}), mode="overwrite")
    return lake


def calendar_attacker(lake, shown: pd.DataFrame, rules, total_text: str):
    """The attacker's programme for a calendar as shown: per day the persons in a heat wave
    ("in"), out of one ("out") and not counted ("away"), and per pair of days the moves between
    them, those the weather and the residence records rule out being zero; and the true moves."""
    from explorer.views.exposure import day_states

    exact_rows = lake.sql("""SELECT person_id, date, heat_wave FROM exposure_daily
                             WHERE residence_status = 'ok' AND heat_wave IS NOT NULL""")
    everyone = int(lake.sql("SELECT count(*) AS n FROM person")["n"].iloc[0])
    states, persons = day_states(shown, exact_rows)
    stock = ["in", "out", "away"]
    attack = Attacker()
    for d in range(len(shown)):
        attack.bound([(d, "in")], shown.at[d, "in_heat_wave_shown"], rules)
        attack.bound([(d, "in"), (d, "out")], shown.at[d, "persons_shown"], rules)
        attack.bound([(d, "in"), (d, "out"), (d, "away")], total_text, rules)
    moves = {}
    for d in range(len(shown) - 1):
        counts = np.bincount(3 * states[:, d] + states[:, d + 1], minlength=9).reshape(3, 3)
        counts[2, 2] += everyone - len(persons)
        for i, j in itertools.product(range(3), repeat=2):
            if counts[i, j] == 0 and i != j:
                continue  # known not to have happened
            moves[(d, stock[i], stock[j])] = counts[i, j]
        for i in range(3):
            attack.equal([("move", d, stock[i], stock[j]) for j in range(3) if (d, stock[i], stock[j]) in moves], [(d, stock[i])])
            attack.equal([("move", d, stock[j], stock[i]) for j in range(3) if (d, stock[j], stock[i]) in moves],
                         [(d + 1, stock[i])])
    return attack, moves


@pytest.mark.parametrize("profile", PROFILES)
def test_one_person_entering_a_heat_wave_is_not_given_away_by_the_calendar(calendar_lake, profile):
    from explorer.privacy.counts import published_total
    from explorer.views import HeatWaveCalendar

    control = DisclosureControl(profile=profile)
    rules = control.rules
    exact = HeatWaveCalendar(lake=calendar_lake).data()
    assert exact.at[8, "in_heat_wave"] - exact.at[7, "in_heat_wave"] == 1  # the attack of finding 3
    shown = HeatWaveCalendar(lake=calendar_lake, role="public", disclosure=control).data()
    attack, moves = calendar_attacker(calendar_lake, shown, rules, published_total(calendar_lake, control).shown)
    assert moves[(7, "out", "in")] == 1
    checked = 0
    for (d, source, target), n in moves.items():
        if source == target or not rules.hides(n):
            continue
        low, high = attack.range([("move", d, source, target)])
        assert high - low >= wide(rules), (profile, d, source, target, n, low, high)
        checked += 1
    for d in range(len(shown) - 1):  # those who entered a heat wave, and those who left it
        entered, left = [("move", d, "out", "in"), ("move", d, "away", "in")], [("move", d, "in", "out"), ("move", d, "in", "away")]
        for group in (entered, left):
            group = [g for g in group if g[1:] in moves]
            n = sum(moves[g[1:]] for g in group)
            if group and rules.hides(n):
                low, high = attack.range(group)
                assert high - low >= wide(rules), (profile, d, group, n, low, high)
    assert checked
    for column in ("persons_shown", "in_heat_wave_shown"):  # nothing shown in the hidden range
        numbers = pd.to_numeric(shown[column], errors="coerce").dropna()
        assert ((numbers == 0) | (numbers > rules.largest_hidden)).all()


def test_public_calendar_is_fast_on_a_year_of_days(calendar_lake, tmp_path):
    """A year of days for 150 persons in 30 areas, each with its own heat waves: the public
    calendar is one linked page, audited in blocks, in well under the few seconds a page may take."""
    import time

    from explorer.views import HeatWaveCalendar
    from explorer.views.exposure import protect_calendar

    rng = np.random.default_rng(3)
    days = pd.date_range("2023-01-01", periods=365, freq="D")
    area = rng.integers(0, 30, 150)
    waves = np.zeros((30, len(days)), dtype=bool)
    for a in range(30):
        for start in rng.choice(np.arange(150, 240), 3, replace=False):
            waves[a, start:start + rng.integers(3, 8)] = True
    day = np.tile(np.arange(len(days)), 150)
    rows = pd.DataFrame({"person_id": np.repeat([f"r{i:03d}" for i in range(150)], len(days)),
                         "date": days[day], "heat_wave": waves[np.repeat(area, len(days)), day]})
    frame = rows.groupby("date").agg(persons=("heat_wave", "size"), in_heat_wave=("heat_wave", "sum")).reset_index()
    control = DisclosureControl(profile="aou")
    started = time.perf_counter()
    shown = protect_calendar(frame, rows, control, control.lone(150))
    assert time.perf_counter() - started < 5
    assert len(shown) == len(days) and (shown["persons_shown"] == "150").all()
    assert HeatWaveCalendar(lake=calendar_lake, role="public").panel() is not None
