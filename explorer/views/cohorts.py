"""Cohort views: attrition, characterisation, and the builder that writes definition documents.

The builder edits the same document a notebook writes (:mod:`explorer.cohorts.definition`):
one row of widgets per criterion, live attrition counts from one DuckDB query after every
change, a YAML download, and loading a document back. A criterion the widgets cannot show (a
combination with all/any/not) is edited as YAML in its row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import param

from explorer import cohorts
from explorer.cohorts.characterise import (DATED, MISSING, WITH_VALUE, characterise_saved, describe_features, person_levels,
                                           saved_cohort_rows)
from explorer.cohorts.definition import (
    CODE_SYSTEMS, EXPOSURE_VARIABLES, INDEX_RULES, STATISTICS, WEARABLE_METRICS, Definition,
    DefinitionError, parse_text)
from explorer.errors import ExplorerError
from explorer.privacy import PermissionDenied, require
from explorer.privacy.counts import published_total
from explorer.privacy.disclosure import Fact, LinkedPage
from explorer.views.base import MISSING as MISSING_VALUE, LakeView, data_table, holoviews_with_bokeh, message

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

HIDDEN = ("primary", "complementary")
COMPLEMENTARY = "suppressed"


class CohortAttrition(LakeView):
    """Persons left after each criterion of a definition, as a table and a bar chart."""

    definition = param.ClassSelector(class_=Definition, doc="The cohort definition (explorer.cohorts.load(...)); "
                                                            "for a public view, a saved one (cohorts.get(lake, name)).")

    def data(self) -> pd.DataFrame:
        """step, label, persons, removed (protected for a public view: NaN where hidden, with
        ``persons_shown``/``removed_shown`` text). A public view counts saved definitions only:
        counts of two definitions of one's own that differ by one criterion would give the
        persons the criterion removes by subtraction, whatever each page hides."""
        self._require()
        if self.definition is None:
            raise ExplorerError("CohortAttrition needs a definition: CohortAttrition(lake=..., definition=cohorts.load(...))")
        if self.public and self.definition.sha256 not in set(cohorts.saved(self.lake)["definition_sha256"]):
            raise PermissionDenied("a public view shows the attrition of saved cohorts only (a researcher saves and so "
                                   "reviews them); counting a definition of one's own needs the researcher role")
        if not self.public:
            return cohorts.count(self.lake, self.definition)
        return public_attrition(self.lake, self.disclosure, self.definition)

    def panel(self):
        return attrition_panel(self.data(), self.public, self.disclosure.rules)

    @classmethod
    def of_saved(cls, *, lake: Lake, role: str, name: str) -> CohortAttrition:
        """The attrition of the saved cohort ``name`` (what a public page may show)."""
        return cls(lake=lake, role=role, definition=cohorts.get(lake, name))

    @staticmethod
    def saved_names(lake: Lake) -> list[str]:
        """Names of the saved cohorts, oldest first (empty before the first save): names only,
        which every role may see."""
        return cohorts.saved(lake)["cohort"].tolist() if lake.has_table("cohort_member") else []


def attrition_panel(frame: pd.DataFrame, public: bool, rules=None):
    """The attrition as bars (persons remaining after each step) over its table. A count
    disclosure control hid is drawn as a hatched bar up to the most it can be (the step
    before's count, or the rule's largest hidden count if less), labelled as the table says it
    ("suppressed", "<=20"): never as a gap that reads as nobody. ``rules``: the disclosure
    profile's (default: the profile in force)."""
    import panel as pn

    from explorer.privacy import DisclosureControl
    from explorer.views.base import HIDDEN_STYLE, hidden_caption

    hv = holoviews_with_bokeh()
    rules = rules or DisclosureControl().rules
    persons = frame["persons"].astype(float)
    texts = frame["persons_shown"] if public else frame["persons"].map(str)
    # a hidden step keeps at most the persons of the step before (or the rule's largest hidden count)
    before = persons.ffill().shift().fillna(0)
    drawn = [p if p == p else (min(b, rules.largest_hidden) if t == rules.label else b)
             for p, b, t in zip(persons, before, texts)]
    # the label on the axis says it (a Labels overlay on inverted categorical bars does not render)
    labels = [f"{s}. {label[:60]}" + (f"  [{t}, at most {d:,.0f}]" if p != p else "")
              for s, label, p, t, d in zip(frame["step"], frame["label"], persons, texts, drawn)]
    shown = pd.DataFrame({"step_label": labels, "persons": drawn, "persons_text": texts,
                          "colour": ["#30a2da" if p == p else HIDDEN_STYLE["fill_color"] for p in persons]})
    caption = hidden_caption(persons, rules, "steps") if public else ""
    bars = hv.Bars(shown, kdims=["step_label"], vdims=["persons", "persons_text", "colour"]).opts(
        color="colour", line_color="#666666", tools=["hover"], invert_axes=True, responsive=True,
        height=60 + 34 * len(frame), xlabel="", ylabel="persons remaining", invert_yaxis=True,
        title="Attrition" + (f"\n{caption}; grey: at most" if caption else ""))
    columns = ["step", "label", "persons_shown", "removed_shown"] if public else ["step", "label", "persons", "removed"]
    table = data_table(frame[columns], {"label": "criterion", "persons_shown": "persons remaining",
                                        "persons": "persons remaining", "removed_shown": "removed", "removed": "removed"},
                       widths={"step": 60})
    return pn.Column(bars, table, sizing_mode="stretch_width")


#: how the comparator dropdown names the default, no saved cohort
WHOLE_LAKE = "the whole lake"


class CohortCharacterisation(LakeView):
    """A cohort against the whole lake or another cohort: one row per feature (and level), with
    the standardised mean difference; a Love plot of the differences."""

    # dropdowns of the saved cohorts (set when the view is built); a name from elsewhere (a URL)
    # is kept, so data() can say it is not saved instead of the page refusing it
    cohort = param.Selector(default="", objects=[""], check_on_set=False, doc="Saved cohort name (explorer cohort list).")
    against = param.Selector(default="", objects={WHOLE_LAKE: ""}, check_on_set=False,
                             doc="Saved cohort to compare with (the whole lake when empty).")

    def __init__(self, **params):
        chosen = {name: params.pop(name) for name in ("cohort", "against") if name in params}
        super().__init__(**params)
        saved = CohortAttrition.saved_names(self.lake) if self.lake is not None else []
        if saved:
            self.param["cohort"].objects = saved
            self.param["against"].objects = {WHOLE_LAKE: "", **{name: name for name in saved}}
            chosen.setdefault("cohort", saved[0])
        for name, value in chosen.items():
            setattr(self, name, value)

    def data(self) -> pd.DataFrame:
        """The characterisation table (:func:`explorer.cohorts.characterise`); for a public view
        every count passes disclosure control, on the one page of every saved cohort and the lake
        (:func:`cohorts_page`), and a value, SD or SMD resting on a hidden count is hidden with
        it."""
        self._require("cohort_member")
        if not self.cohort:
            raise ExplorerError("CohortCharacterisation needs cohort=NAME, a saved cohort (explorer cohort list)")
        saved = cohorts.saved(self.lake)["cohort"].tolist()
        for name in (self.cohort, self.against):  # saved names only: never a path or a document from a URL
            if name and name not in saved:
                raise ExplorerError(f"no saved cohort {name!r}; saved cohorts: {', '.join(saved) or 'none'}")
        if not self.public:
            return cohorts.characterise(self.lake, self.cohort, self.against or None)

        page = cohorts_page(self.lake, self.disclosure)  # it read every saved cohort's rows: the table is theirs
        table = characterise_saved(page.rows, page.as_of, self.cohort, self.against or None)
        return protect_characterisation(table, page, self.cohort, self.against or None)

    def display_table(self, table: pd.DataFrame | None = None) -> pd.DataFrame:
        """The table as a reader sees it: one column per group (``n``, value), and the SMD; the
        first row is each group's size (for a public view, as every public page shows it)."""
        table = self.data() if table is None else table
        first, second = table.attrs.get("groups", ["cohort", "comparator"])
        sizes = table.attrs.get("sizes_shown") or [_integer(n) for n in table.attrs.get("sizes", ["", ""])]
        out = table[["domain", "feature", "level"]].copy()
        for k, name in ((1, first), (2, second)):
            counts = table.get(f"count_{k}_shown", table[f"count_{k}"].map(_integer))
            value = table[f"value_{k}"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
            unit = np.where(table["kind"] == "proportion", "%", "")
            sd = table[f"sd_{k}"].map(lambda v: "" if pd.isna(v) else f" (SD {v:.1f})")
            n = table.get(f"n_{k}_shown", table[f"n_{k}"].map(_integer))
            cells = [(f"{c} ({v}{u})" if v else c) if kind == "proportion" and c != "" else f"{v}{u}{s}"
                     for c, v, u, s, kind in zip(counts, value, unit, sd, table["kind"])]
            # an empty cell says why: a mean resting on a hidden count is hidden with it, in its wording
            out[f"{name}"] = [cell or (str(m) if str(m) and not str(m).replace(",", "").isdigit() else MISSING_VALUE)
                              for cell, m in zip(cells, n)]
            out[f"{name}: n"] = n
        out["smd"] = table["smd"].map(lambda v: MISSING_VALUE if pd.isna(v) else f"{v:+.2f}")
        persons = pd.DataFrame([{"domain": "", "feature": "persons in the group", "level": "", first: sizes[0],
                                 f"{first}: n": sizes[0], second: sizes[1], f"{second}: n": sizes[1], "smd": ""}])
        return pd.concat([persons, out], ignore_index=True)

    def panel(self):
        import panel as pn

        hv = holoviews_with_bokeh()
        table = self.data()
        plotted = table.dropna(subset=["smd"])
        plotted = plotted.assign(row=love_labels(plotted["feature"], plotted["level"]))
        shown = self.display_table(table)
        table_view = data_table(shown, {"smd": "SMD"}, page_size=15, layout="fit_columns",
                                widths={"domain": "10%", "feature": "22%", "level": "12%", "smd": "6%",
                                        **{c: "8%" if c.endswith(": n") else "15%" for c in shown.columns[3:-1]}})
        if plotted.empty:  # every difference rests on a hidden count: say so instead of an empty plot
            return pn.Column(message(f"No standardised difference of {table.attrs['groups'][0]} against "
                                     f"{table.attrs['groups'][1]} can be shown: each rests on a count disclosure "
                                     "control hides (the table says which).", "info", "Love plot."),
                             table_view, sizing_mode="stretch_width")
        love = (hv.Points(plotted, kdims=["smd", "row"], vdims=["domain"]).opts(
                    color="domain", cmap="Category10", size=7, tools=["hover"], responsive=True,
                    height=max(260, 16 * len(plotted)), xlabel="standardised mean difference", ylabel="",
                    title=f"{table.attrs['groups'][0]} vs {table.attrs['groups'][1]}" + (
                        f"\n{len(table) - len(plotted)} of {len(table)} differences not drawn: each rests on a hidden "
                        "count (— in the table)" if self.public and len(plotted) < len(table) else ""),
                    legend_position="right")
                * hv.VLine(0.1).opts(color="gray", line_dash="dashed") * hv.VLine(-0.1).opts(color="gray", line_dash="dashed"))
        return pn.Column(love, table_view, sizing_mode="stretch_width")


def love_labels(features: pd.Series, levels: pd.Series) -> list[str]:
    """The Love plot's row labels, short enough to be read whole beside the plot: a feature
    without its LOINC code and ", per year", and its level unless the level is "mean" or "yes"
    ("personal ageing rate, Albumin", "race: Asian"). Rows that would share a label keep the
    long form (a categorical axis would draw them as one row)."""
    import re

    long = [f"{f}: {lv}" for f, lv in zip(features, levels)]
    short = [re.sub(r" \(LOINC [^)]*\)|, per year", "", f) + ("" if lv in ("mean", "yes") else f": {lv}")
             for f, lv in zip(features, levels)]
    taken = pd.Series(short).duplicated(keep=False).tolist()
    return [lng if clash else sht for sht, lng, clash in zip(short, long, taken)]


@dataclass
class CohortsPageRelease:
    """The protected public cohorts page (:func:`cohorts_page`): per count, its index in
    ``release`` (a :class:`~explorer.privacy.disclosure.PageRelease`).

    ``entries[(group, column, level)]``: a group's count of persons with a level of a feature
    (level "with a value": those with any); groups are ``"lake"``, ``"lake:DATE"`` (a feature
    measured at a date, the lake at a cohort's median index date) and ``"cohort:NAME"``.
    ``sizes[group]``: the group's size. ``chains[name]``: a saved cohort's attrition (``sha``,
    ``steps`` (step and label), ``persons`` and ``removed`` entries). ``columns``: feature
    text to column; ``dated``: the columns measured at a date; ``as_of``: each cohort's date
    for the lake; ``rows``: the per-person features read (server side only), from which each
    characterisation table is made (:func:`explorer.cohorts.characterise.characterise_saved`).
    An index of None is a count of nobody (0)."""

    release: object
    entries: dict
    sizes: dict
    chains: dict
    columns: dict
    dated: set
    as_of: dict
    rows: pd.DataFrame = None  # the per-person rows read (server side only): the exact tables of the page


class CohortsPage(LakeView):
    """Every count the public cohorts page can show, protected as one page (see
    :func:`cohorts_page`)."""

    #: what the page reads: the saved cohorts, what their definitions read, and the features
    TABLES = tuple(sorted({*cohorts.COHORT_INPUTS, "cohort_member", "biological_age", "ageotype", "person_ageing_rate",
                           "marker_ageing"}))

    def release(self) -> CohortsPageRelease:
        self._require("person")
        present = set(self.lake.tables())
        key = ("release", *((t, self.lake.version(t)) for t in self.TABLES if t in present))
        return self._shared(key, lambda: build_cohorts_page(self.lake, self.disclosure))


def cohorts_page(lake: Lake, disclosure) -> CohortsPageRelease:
    """The public cohorts page of ``lake``, built once per version of the lake and disclosure
    profile and shared (:func:`build_cohorts_page`)."""
    return CohortsPage(lake=lake, role="public", disclosure=disclosure).release()


def build_cohorts_page(lake: Lake, disclosure) -> CohortsPageRelease:
    """Protect, as one page, every count a public reader can see on the cohorts page: the
    attrition of every saved cohort and the characterisation of every saved cohort and of the
    whole lake, whichever two are put side by side.

    Returns
    -------
    CohortsPageRelease

    Notes
    -----
    A cohort is some of the lake's persons, so its counts and the lake's, each protected on its
    own, give by subtraction the counts of the persons outside it: 12 persons outside a cohort
    of 138 in a lake of 150, or the one person outside a cohort of 149, described level by
    level. Every saved cohort can be shown beside the lake or beside any other, and its
    attrition beside its characterisation, so the page a reader assembles is all of them; each
    count is therefore decided once, on one page of linked tables (Hundepool et al. 2012,
    sec. 4.6), and shown the same everywhere.

    The finest cells are the lake's persons split by which saved cohorts they belong to (one
    *atom* per pattern of memberships: members of a cohort, those outside it, of both of two
    cohorts, ...) and, per feature, by level (a missing value is a level). A group's count of a
    level is the sum of its atoms' cells, and the lake's is the sum of all of them: inside plus
    outside equals the lake. Each atom's levels sum to its size, for every feature (the links
    between features). What a reader derives without seeing it is audited as a count: each
    atom's cells and size (the persons outside a cohort with a level), the persons of a nested
    group outside a smaller one, the persons without a value, the "no" of a yes/no feature. A
    feature measured at a date (the latest PhenoAge before it) has its own cells for each
    measurement, tied to the atoms' sizes.

    An attrition chain adds the persons removed at each step (cells): its last row is the
    cohort (the same cells as the cohort's size, so the same count), its first is everyone,
    and the persons removed by several steps together are audited too.

    Counts published elsewhere are taken as known facts: the lake's total
    (:func:`explorer.privacy.counts.published_total`), and the lake's persons by sex at birth,
    race, ethnicity and unknown age as the overview publishes them.

    A small count the page derives (persons outside a cohort with a level) is kept open to at
    least half the hidden range, as a small count shown would be: with the lake's count shown,
    the cohort's count beside it is hidden, with a complement so it cannot be solved either.
    Zeros are shown, as everywhere (a known limit: a level nobody outside a cohort has is seen
    to be so).

    References
    ----------
    Hundepool A, Domingo-Ferrer J, Franconi L, et al. Statistical Disclosure Control. Wiley,
    2012 (sec. 4.6, linked tables).
    """

    saved = cohorts.saved(lake)
    names = saved["cohort"].tolist()
    everyone = lake.sql("SELECT DISTINCT person_id FROM person")["person_id"].astype(str)
    total = published_total(lake, disclosure)
    total = total if total is not None and total.value == len(everyone) else None
    members = (lake.sql("SELECT cohort, person_id, index_date FROM cohort_member") if lake.has_table("cohort_member")
               else pd.DataFrame(columns=["cohort", "person_id", "index_date"]))
    members["person_id"] = members["person_id"].astype(str)
    members = members[members["cohort"].isin(names) & members["person_id"].isin(set(everyone))]
    page = LinkedPage()

    # atoms: the lake's persons by the saved cohorts they belong to
    belongs = np.zeros((len(everyone), len(names)), dtype=bool)
    position = pd.Series(np.arange(len(everyone)), index=everyone.to_numpy())
    for c, name in enumerate(names):
        belongs[position[members.loc[members["cohort"] == name, "person_id"].unique()].to_numpy(), c] = True
    patterns, atom_of = np.unique(belongs, axis=0, return_inverse=True) if len(everyone) else (np.zeros((0, len(names))), [])
    atom_of = pd.Series(np.asarray(atom_of).ravel(), index=everyone.to_numpy())
    size_cells = page.cells(np.bincount(atom_of.to_numpy(), minlength=len(patterns)))
    atoms_of = {"lake": list(range(len(patterns)))}
    for c, name in enumerate(names):
        atoms_of[f"cohort:{name}"] = [a for a in range(len(patterns)) if patterns[a, c]]
    sizes = {group: page.count(size_cells[atoms], fact=total if group == "lake" else None) for group, atoms in atoms_of.items()}
    for cell in size_cells:
        page.count([cell], published=False)
    nested = [(set(atoms_of[outer]) - set(atoms_of[inner])) for outer in atoms_of for inner in atoms_of
              if outer != inner and set(atoms_of[inner]) < set(atoms_of[outer])]
    nested = [sorted(rest) for rest in nested if len(rest) > 1]  # one atom: its own cells
    for rest in nested:
        page.count(size_cells[rest], published=False)

    # features
    rows, as_of = saved_cohort_rows(lake, members)
    entries, columns, dated = {}, {}, set()
    if len(rows):
        rows["person_id"] = rows["person_id"].astype(str)
        lake_groups = sorted(g for g in rows["group"].unique() if g.startswith("lake:"))
        for group in lake_groups:
            atoms_of[group] = atoms_of["lake"]
        first = rows[rows["group"] == lake_groups[0]].set_index("person_id")
        known = _overview_facts(lake, disclosure)
        for described in describe_features(rows):
            column, kind = described["column"], described["kind"]
            columns[described["text"]] = column
            levels = {"categorical": described["levels"], "binary": ["yes", "no"], "continuous": [WITH_VALUE]}[kind]
            shown = {"categorical": described["levels"], "binary": ["yes"], "continuous": [WITH_VALUE]}[kind]
            levels = levels + [MISSING]
            if column in DATED:
                dated.add(column)
                measures = [(g, rows[rows["group"] == g].set_index("person_id"), [g]) for g in sorted(rows["group"].unique())]
            else:
                measures = [("lake", first, [g for g in atoms_of if not g.startswith("lake:")])]
            for measure, measured, groups in measures:
                level = person_levels(measured[column], kind)
                codes = pd.Categorical(level.to_numpy(), categories=levels).codes
                table = np.bincount(atom_of[level.index].to_numpy() * len(levels) + codes,
                                    minlength=len(patterns) * len(levels)).reshape(len(patterns), len(levels))
                cells = {}
                for a in atoms_of[measure]:
                    for i, lv in enumerate(levels):
                        cells[a, lv] = page.cell(table[a, i])
                        page.count([cells[a, lv]], published=False)
                    page.link([cells[a, lv] for lv in levels], [size_cells[a]])
                for group in groups:
                    for lv in levels:
                        cells_of = [cells[a, lv] for a in atoms_of[group]]
                        fact = known.get(column, {}).get(lv) if group == "lake" else None
                        if fact is not None and fact.value != sum(page.truth[c] for c in cells_of):
                            fact = None  # not the same count after all (a value spelt "unknown"): protected here
                        entries[group, column, lv] = page.count(cells_of, published=lv in shown, fact=fact)
                    entries[group, column, WITH_VALUE] = page.count(
                        [cells[a, lv] for a in atoms_of[group] for lv in levels if lv != MISSING])
                if measure == "lake":
                    for rest in nested:
                        for lv in levels:
                            page.count([cells[a, lv] for a in rest], published=False)

    # attrition chains
    chains = {}
    for name in names:
        definition = cohorts.get(lake, name)
        try:
            exact = cohorts.count(lake, definition)
        except ExplorerError:  # a table it reads is gone: its attrition view says so
            continue
        remaining = [int(v) for v in exact["persons"]]
        removed_cells = page.cells([remaining[k - 1] - remaining[k] for k in range(1, len(remaining))])
        group = f"cohort:{name}"
        whole = remaining[0] == len(everyone)
        if remaining[-1] == sum(page.truth[c] for c in size_cells[atoms_of[group]]) and whole:
            kept = list(size_cells[atoms_of[group]])
            page.link(removed_cells, size_cells[[a for a in atoms_of["lake"] if a not in atoms_of[group]]])
        else:  # the saved members are older than the lake: the chain stands apart from them
            kept = [page.cell(remaining[-1])]
            if whole:
                page.link(list(removed_cells) + kept, size_cells)
        persons = [page.count(list(removed_cells[k:]) + kept, fact=total if k == 0 and whole else None)
                   for k in range(len(remaining))]
        removed = [page.count([cell]) for cell in removed_cells]
        for j in range(len(removed_cells)):
            for k in range(j + 2, len(removed_cells) + 1):
                page.count(removed_cells[j:k], published=False)
        chains[name] = {"sha": definition.sha256, "steps": exact[["step", "label"]].copy(), "persons": persons,
                        "removed": removed}
    release = disclosure.protect(page)
    return CohortsPageRelease(release, entries, sizes, chains, columns, dated, as_of, rows)


def _overview_facts(lake: Lake, disclosure) -> dict:
    """The lake's persons by sex at birth, race and ethnicity, and those of unknown age, as the
    overview publishes them: ``{column: {level: Fact}}`` (its "unknown" is a missing value)."""
    from explorer.views.overview import demographic_page

    zero = Fact(0.0, "shown", "0", 0.0, 0.0, 0.0)  # no row "unknown": a reader sees there are none
    out = {}
    for column, by in (("sex_at_birth", "sex_at_birth"), ("race", "race"), ("ethnicity", "ethnicity"), ("age", "age_band")):
        facts = demographic_page(lake, disclosure, by).facts(by)
        missing = facts.pop("unknown", zero)
        out[column] = {MISSING: missing} if column == "age" else {**facts, MISSING: missing}
    return out


def public_attrition(lake: Lake, disclosure, definition) -> pd.DataFrame:
    """The attrition of a saved cohort as a public reader sees it: its chain on the cohorts page
    (:func:`cohorts_page`), so the lake's total, the cohort's size and every count beside them
    are as the characterisation shows them."""
    page = cohorts_page(lake, disclosure)
    chain = page.chains.get(definition.name)
    if chain is None or chain["sha"] != definition.sha256:
        exact = cohorts.count(lake, definition)
        total = published_total(lake, disclosure)
        known = {0: total} if total is not None and total.value == exact["persons"].iloc[0] else None
        frame = pd.concat([exact[["step", "label"]], disclosure.attrition(exact["persons"].astype(float), known=known)], axis=1)
    else:
        release = page.release
        persons, removed = chain["persons"], [None, *chain["removed"]]
        status = [("shown" if k is None else release.status[k]) for k in persons]
        frame = chain["steps"].assign(
            persons=[release.value(k) for k in persons], persons_shown=[release.text(k) for k in persons],
            persons_status=status,
            removed=[np.nan] + [release.value(k) for k in removed[1:]],
            removed_shown=[""] + [release.text(k) for k in removed[1:]],
            removed_status=[""] + [("shown" if k is None else release.status[k]) for k in removed[1:]])
    frame.attrs.update(cohort=definition.name, definition_sha256=definition.sha256, protected=True)
    return frame


def protect_characterisation(table: pd.DataFrame, page: CohortsPageRelease, target: str, against: str | None = None
                             ) -> pd.DataFrame:
    """The characterisation table of ``target`` against ``against`` (None: the whole lake) as a
    public user may see it, with every count as the cohorts page publishes it (see
    :func:`build_cohorts_page`).

    A group whose size is small (hidden as such) shows nothing but that. A proportion's percent is
    computed from the counts shown, and a mean and SD are shown only where the number of persons
    with a value is: where it is hidden, another group's mean and size would otherwise give the
    mean of the few persons between them. SMDs are recomputed from what is shown."""

    release = page.release
    rules = release.profile
    out = table.copy()
    groups = [f"cohort:{target}", f"cohort:{against}" if against else "lake"]
    sizes = [page.sizes.get(group, _NOT_ON_PAGE) for group in groups]
    out.attrs["sizes_shown"] = [COMPLEMENTARY if k is _NOT_ON_PAGE else release.text(k) for k in sizes]
    for k, group in enumerate(groups, 1):
        small = sizes[k - 1] is not _NOT_ON_PAGE and sizes[k - 1] is not None and release.status[sizes[k - 1]] == "primary"
        counts, ns, values, sds, count_texts, n_texts = [], [], [], [], [], []
        for row in table.to_dict("records"):
            column = page.columns.get(row["feature"])
            measured = f"lake:{page.as_of.get(target)}" if group == "lake" and column in page.dated else group
            level = WITH_VALUE if row["kind"] == "continuous" else row["level"]
            n = page.entries.get((measured, column, WITH_VALUE), _NOT_ON_PAGE)
            count = page.entries.get((measured, column, level), _NOT_ON_PAGE) if row["kind"] == "proportion" else None
            n_hidden = small or n is _NOT_ON_PAGE or release.hides(n)
            count_hidden = small or count is _NOT_ON_PAGE or release.hides(count)
            n_value = np.nan if n_hidden else release.value(n)
            n_texts.append(rules.label if small else COMPLEMENTARY if n is _NOT_ON_PAGE else release.text(n))
            if row["kind"] == "proportion":
                value = np.nan if count_hidden else release.value(count)
                counts.append(value)
                count_texts.append(rules.label if small else COMPLEMENTARY if count is _NOT_ON_PAGE else release.text(count))
                values.append(100 * value / n_value if n_value == n_value and n_value > 0 and value == value else np.nan)
                sds.append(np.nan)
            else:
                counts.append(np.nan)
                count_texts.append("")
                values.append(np.nan if n_hidden else row[f"value_{k}"])
                sds.append(np.nan if n_hidden else row[f"sd_{k}"])
        out[f"count_{k}"], out[f"value_{k}"], out[f"sd_{k}"] = counts, values, sds
        out[f"count_{k}_shown"], out[f"n_{k}_shown"] = count_texts, n_texts
        out[f"n_{k}"] = np.nan  # the text column is what a public reader gets
    out["smd"] = [_public_smd(row) for row in out.to_dict("records")]
    return out


_NOT_ON_PAGE = object()  # a count the cohorts page does not hold: shown as suppressed


def _public_smd(row: dict) -> float:
    """The SMD from what the page shows (so it tells nothing the shown values do not)."""
    if row["kind"] == "continuous":
        m1, m2, s1, s2 = row["value_1"], row["value_2"], row["sd_1"], row["sd_2"]
        pooled = np.sqrt((s1 ** 2 + s2 ** 2) / 2)
        return (m1 - m2) / pooled if np.isfinite(pooled) and pooled > 0 else np.nan
    p1, p2 = row["value_1"] / 100, row["value_2"] / 100
    spread = np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
    return (p1 - p2) / spread if np.isfinite(spread) and spread > 0 else (0.0 if p1 == p2 else np.nan)


def _integer(value) -> str:
    return "" if pd.isna(value) else f"{int(value)}"


# ------------------------------------------------------------------------------------- builder
#: the widgets of each kind of criterion: document key (dotted for ranges and windows) -> widget spec
FIELDS = {
    "demographics": {"age.gte": ("int", "age from"), "age.lt": ("int", "age below"),
                     "sex_at_birth": ("list", "sex at birth"), "race": ("list", "race"),
                     "ethnicity": ("list", "ethnicity"), "zip3": ("list", "ZIP3")},
    "condition": {"code_system": (list(CODE_SYSTEMS), "code system"), "codes": ("list", "codes"),
                  "descendants": ("bool", "and codes below"), "window.start": ("int", "from day"),
                  "window.end": ("int", "to day"), "min_count": ("int", "at least (records)")},
    "lab": {"loinc": ("loinc", "LOINC"), "unit": ("text", "unit"), "value.gte": ("float", "at least"),
            "value.lt": ("float", "below"), "which": (["any", "all", "first", "last"], "which result"),
            "window.start": ("int", "from day"), "window.end": ("int", "to day"), "min_count": ("int", "at least (results)")},
    "wearable": {"min_valid_days": ("int", "valid days at least"), "metric": (["", *WEARABLE_METRICS], "metric"),
                 "statistic": (STATISTICS, "statistic"), "value.gte": ("float", "at least"), "value.lt": ("float", "below"),
                 "window.start": ("int", "from day"), "window.end": ("int", "to day")},
    "exposure": {"variable": (list(EXPOSURE_VARIABLES), "variable"), "statistic": (["days", *STATISTICS], "statistic"),
                 "day_value.gte": ("float", "days with value at least"), "value.gte": ("float", "at least"),
                 "value.lt": ("float", "below"), "window.start": ("int", "from day"), "window.end": ("int", "to day")},
}
DEFAULTS = {"condition": {"code_system": "ICD10CM", "descendants": True, "min_count": 1},
            "lab": {"which": "any", "min_count": 1}, "wearable": {"statistic": "median", "min_valid_days": 0},
            "exposure": {"variable": "heat_wave", "statistic": "days"}}


def _vocabulary(key: str) -> tuple[str, ...]:
    """The values the catalog allows for a demographic criterion's field (sex at birth, race,
    ethnicity); empty where any value goes."""
    from explorer.catalog import default_catalog

    person = default_catalog().get("person")
    return person.column(key).values if person is not None and key in person.column_names else ()


def _widget(spec, label, value, key: str = ""):
    import panel as pn

    kind = spec
    if kind == "list" and (known := _vocabulary(key)):  # pick from the vocabulary: a misspelt value cannot be typed
        chosen = list(value or [])
        return pn.widgets.MultiChoice(label=label, options=[*known, *(v for v in chosen if v not in known)],
                                      value=chosen, width=260)
    if isinstance(kind, list):
        return pn.widgets.Select(label=label, options=kind, value=value if value in kind else kind[0], width=170)
    if kind == "loinc":  # the codes the suite converts to SI, offered as one types; any other code is still taken
        from explorer.catalog.units import MARKER_UNITS

        return pn.widgets.AutocompleteInput(label=label, options=sorted(MARKER_UNITS), value=value or "", restrict=False,
                                            min_characters=1, search_strategy="includes", width=140)
    if kind == "bool":
        return pn.widgets.Checkbox(label=label, value=bool(value) if value is not None else True, width=150)
    if kind == "int":
        return pn.widgets.IntInput(label=label, value=value, width=110)
    if kind == "float":
        return pn.widgets.FloatInput(label=label, value=value, width=120)
    if kind == "list":
        return pn.widgets.TextInput(label=label + " (comma-separated)", value=", ".join(value or []), width=220)
    return pn.widgets.TextInput(label=label, value=value or "", width=140)


class CriterionEditor:
    """The widgets of one criterion; ``document()`` is its part of the definition."""

    def __init__(self, section: str, document: dict, on_change):
        import panel as pn

        self.section = section
        self.kind = document.get("kind") if "kind" in document else None
        self.widgets = {}
        self.remove = pn.widgets.Button(label="remove", color="light", width=80)
        if self.kind in FIELDS and set(_flatten(document)) - {"kind", "label"} <= set(FIELDS[self.kind]):
            flat = {**DEFAULTS.get(self.kind, {}), **_flatten(document)}
            for key, (spec, label) in FIELDS[self.kind].items():
                self.widgets[key] = _widget(spec, label, flat.get(key), key)
            self.widgets["label"] = pn.widgets.TextInput(label="label (optional)", value=document.get("label", ""), width=200)
        else:  # a combination, or keys the widgets do not show: edited as YAML, nothing lost
            import yaml

            self.kind = None
            self.widgets["yaml"] = pn.widgets.TextAreaInput(label="criterion (YAML)", value=yaml.safe_dump(document, sort_keys=False),
                                                            height=140, width=520)
        for widget in self.widgets.values():
            widget.param.watch(lambda event: on_change(), "value")

    def document(self) -> dict:
        if self.kind is None:
            try:
                return parse_text(self.widgets["yaml"].value, self.section) or {}
            except DefinitionError as exc:
                raise DefinitionError([f"{self.section}: {problem}" for problem in exc.problems]) from None
        out: dict = {"kind": self.kind}
        for key, widget in self.widgets.items():
            value = widget.value
            if FIELDS[self.kind].get(key, ("text",))[0] == "list" and isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if value in (None, "", []) or value == DEFAULTS.get(self.kind, {}).get(key):
                continue
            head, _, tail = key.partition(".")
            if tail:
                out.setdefault(head, {})[tail] = value
            else:
                out[key] = value
        return out

    def panel(self):
        import panel as pn

        title = f"{self.section}: {self.kind or 'combination'}"
        return pn.Card(pn.FlexBox(*self.widgets.values(), self.remove), title=title, collapsible=False,
                       sizing_mode="stretch_width")


class CohortBuilder(LakeView):
    """Build a cohort definition with widgets and see its attrition after every change.

    ``document`` always holds the definition as YAML, the same text a notebook would write with
    ``definition.to_yaml()``; ``load()`` takes one back. A researcher can save it to the lake.
    """

    #: counting persons under any definition a user writes: researchers (see ACCESS["define_cohorts"])
    access = "define_cohorts"

    document = param.String(default="", doc="The definition as YAML (read-only mirror of the widgets).")
    problems = param.List(default=[], doc="Why the current widgets do not make a valid definition (empty when valid).")

    def __init__(self, definition=None, **params):
        import panel as pn

        super().__init__(**params)
        self._header = {
            "name": pn.widgets.TextInput(label="name", value="my-cohort", width=200),
            "version": pn.widgets.IntInput(label="version", value=1, start=1, width=90),
            "author": pn.widgets.TextInput(label="author", value="", width=160),
            "description": pn.widgets.TextInput(label="description", value="", width=380),
        }
        self._index = {
            "rule": pn.widgets.Select(label="index date", options=INDEX_RULES, value="first_condition", width=180),
            "codes": pn.widgets.TextInput(label="codes (first_condition)", value="", width=180),
            "code_system": pn.widgets.Select(label="code system", options=list(CODE_SYSTEMS), value="ICD10CM", width=120),
            "loinc": _widget("loinc", "LOINC (first_lab)", ""),
            "date": pn.widgets.TextInput(label="date (fixed, YYYY-MM-DD)", value="", width=170),
        }
        self._editors: list[CriterionEditor] = []
        self._rows = pn.Column(sizing_mode="stretch_width")
        self._add_kind = pn.widgets.Select(label="criterion kind", options=list(FIELDS), value="demographics", width=160)
        self._add_section = pn.widgets.RadioButtonGroup(options=["inclusion", "exclusion"], value="inclusion", width=200)
        self._add = pn.widgets.Button(label="add criterion", color="primary", width=130)
        self._add.on_click(lambda event: self.add(self._add_section.value, self._add_kind.value))
        self._attrition = pn.Column(sizing_mode="stretch_width")
        self._message = pn.pane.Alert("", alert_type="danger", visible=False)
        # an upload is document text, never a path on the server; a file over MAX_DOCUMENT_BYTES
        # is refused before it is parsed (cohorts.loads)
        self._upload = pn.widgets.FileInput(accept=".yaml,.yml,.json", width=220)
        self._upload.param.watch(lambda event: self.load_upload(event.new), "value")
        self._save = pn.widgets.Button(label="save to lake", color="success", width=120,
                                       disabled=self.role == "public")
        self._save.on_click(lambda event: self.save())
        self._updating = False
        for widget in [*self._header.values(), *self._index.values()]:
            widget.param.watch(lambda event: self._changed(), "value")
        if definition is not None:
            self.load(definition)
        else:
            self._changed()

    # ------------------------------------------------------------------ editing
    def add(self, section: str, kind: str, document: dict | None = None) -> CriterionEditor:
        """Add a criterion row (``document``: its part of a definition, default empty)."""
        editor = CriterionEditor(section, document or {"kind": kind}, self._changed)
        editor.remove.on_click(lambda event, e=editor: self.remove(e))
        self._editors.append(editor)
        self._layout_rows()
        self._changed()
        return editor

    def remove(self, editor: CriterionEditor) -> None:
        self._editors.remove(editor)
        self._layout_rows()
        self._changed()

    @property
    def editors(self) -> list[CriterionEditor]:
        return list(self._editors)

    def load(self, definition) -> None:
        """Show ``definition`` (a Definition, a document, a path or YAML/JSON text) in the widgets."""
        definition = cohorts.as_definition(definition)
        document = definition.to_dict()
        self._updating = True
        try:
            for key, widget in self._header.items():
                widget.value = document.get(key, widget.value if key in ("name", "version") else "")
            index = document["index_date"]
            self._index["rule"].value = index["rule"]
            self._index["codes"].value = ", ".join(index.get("codes", []))
            self._index["code_system"].value = index.get("code_system", "ICD10CM")
            self._index["loinc"].value = index.get("loinc", "")
            self._index["date"].value = index.get("date", "")
            self._extra_index = {k: v for k, v in index.items() if k not in ("rule", "codes", "code_system", "loinc", "date")}
            self._editors = []
            for section in ("inclusion", "exclusion"):
                for item in document.get(section, []):
                    editor = CriterionEditor(section, item, self._changed)
                    editor.remove.on_click(lambda event, e=editor: self.remove(e))
                    self._editors.append(editor)
        finally:
            self._updating = False
        self._layout_rows()
        self._changed()

    def load_upload(self, content: bytes | None) -> bool:
        """Show an uploaded definition (document text, never a path on the server); a file that
        is not one shows why, in the builder's message, and is neither kept nor logged."""
        if not content:
            return False
        try:
            self.load(cohorts.loads(content.decode("utf-8", "replace"), "the uploaded file"))
        except DefinitionError as exc:
            self._show("The uploaded file is not a cohort definition:", exc.problems, "danger")
            return False
        except ExplorerError as exc:
            self._show("The uploaded file is not a cohort definition:", [str(exc)], "danger")
            return False
        return True

    def _show(self, lead: str, lines, kind: str) -> None:
        """The builder's message: ``lead`` (written here), then ``lines`` shown as text."""
        from explorer.views.base import plain_text

        self._message.object = f"**{lead}**\n\n" + "\n".join(f"- {plain_text(line)}" for line in lines)
        self._message.alert_type, self._message.visible = kind, True

    def definition(self) -> Definition:
        """The definition the widgets describe; raises DefinitionError when they do not make one."""
        return cohorts.from_dict(self._document(), "the builder's definition")

    def _document(self) -> dict:
        index = {"rule": self._index["rule"].value}
        rule = index["rule"]
        if rule == "first_condition":
            index["code_system"] = self._index["code_system"].value
            index["codes"] = [c.strip() for c in self._index["codes"].value.split(",") if c.strip()]
        elif rule == "first_lab":
            index["loinc"] = self._index["loinc"].value.strip()
        elif rule == "fixed":
            index["date"] = self._index["date"].value.strip()
        index.update(getattr(self, "_extra_index", {}))
        document = {"name": self._header["name"].value.strip(), "version": self._header["version"].value,
                    "author": self._header["author"].value, "description": self._header["description"].value,
                    "index_date": index}
        for section in ("inclusion", "exclusion"):
            items = [e.document() for e in self._editors if e.section == section]
            if items:
                document[section] = items
        return document

    def _changed(self) -> None:
        if self._updating:
            return
        try:
            definition = self.definition()
        except DefinitionError as exc:
            self.problems = list(exc.problems)
            self._show("The definition is not complete yet:", exc.problems, "warning")
            return
        self.problems = []
        self._message.visible = False
        self.document = definition.to_yaml()
        try:
            frame = self.attrition(definition)
        except ExplorerError as exc:
            self._show("The attrition cannot be counted:", [str(exc)], "danger")
            return
        self._attrition.objects = [attrition_panel(frame, self.public, self.disclosure.rules)]

    def attrition(self, definition: Definition | None = None) -> pd.DataFrame:
        """The live attrition counts (protected for a public builder)."""
        self._require()
        return cohorts.count(self.lake, definition or self.definition(), disclosure=self.disclosure if self.public else None)

    def save(self) -> int:
        """Save the definition to the lake and materialise it (researcher and above)."""

        require(self.role, "person_rows", "saving a cohort")
        version = cohorts.save(self.lake, self.definition())
        self._message.object, self._message.alert_type, self._message.visible = (
            f"saved: cohort_member@{version}", "success", True)
        return version

    def _layout_rows(self) -> None:
        self._rows.objects = [e.panel() for e in self._editors]

    def panel(self):
        import io

        import panel as pn

        download = pn.widgets.FileDownload(callback=lambda: io.StringIO(self.document), filename="cohort.yaml",
                                           label="download YAML", color="default", width=150)
        return pn.Column(
            pn.pane.Markdown("### Cohort builder"),
            pn.FlexBox(*self._header.values()),
            pn.FlexBox(*self._index.values()),
            self._rows,
            pn.Row(self._add_section, self._add_kind, self._add),
            self._message,
            self._attrition,
            pn.Row(download, pn.pane.Markdown("load a definition:"), self._upload, self._save),
            sizing_mode="stretch_width",
        )


def _flatten(document: dict) -> dict:
    out = {}
    for key, value in document.items():
        if isinstance(value, dict):
            for inner, item in value.items():
                out[f"{key}.{inner}"] = item
        else:
            out[key] = value
    return out
