"""Disclosure control: what a ``public`` user may see of a count, a mean or a histogram.

One :class:`DisclosureControl` object, with a selectable :class:`Profile`, protects everything
that leaves the researcher tier. It works on a *page*: every count table shown together (a
cross-tabulation, its margins, a neighbouring panel of the same groups), because a cell hidden in
one table can be solved for from the totals of another.

How a page is protected
-----------------------
1. **Primary suppression** (or redaction): each published count in the profile's small range is
   hidden: All of Us 1-20 (shown "<=20"), CMS 1-10, UK Biobank 1-4; OpenSAFELY redacts 0-7, then
   rounds every other count to the nearest 5.
2. **Audit**: every published count is a sum of the finest cells (the cross of every grouping on
   the page). What a reader learns is a set of linear constraints on those cells: a shown count is
   exact (or, rounded, within 2 of its value), a suppressed small count lies in the small range, a
   complementary one above it, and no cell is negative. For each hidden count a linear programme
   finds the least and greatest value it can take. A small count is exposed when that range is
   narrower than half the hidden range (All of Us: 10 of 1-20, so "<=20" never reads as "2 or
   3"); a complementary one when a single whole number fits.
3. **Complementary suppression**: while some hidden count is exposed, the smallest shown
   non-zero count that shares an equation with it (a cell of the same row or column, else the
   total itself) is hidden too, and the page is audited again.

Linked pages
------------
Pages whose groups are nested or whose cells are tied are protected as one
(:class:`LinkedPage`, :meth:`DisclosureControl.protect`): a cohort beside the whole lake (the
persons inside plus those outside are the lake), an attrition chain, the days of a calendar
(today's persons are yesterday's plus those who came less those who went). Such a page also
audits the counts a reader *derives* without seeing them (the persons outside a cohort with a
level, those who entered a heat wave on a day): a small one must keep half the hidden range
open, as if it were shown and hidden. A count another page already published (the lake's total,
shown on every public page) enters as a :class:`Fact`: shown as published there, never hidden
anew, and, when hidden there, not narrowed further here.

The audit first substitutes the cells the shown counts pin (a count shown as 0 pins all its
cells) and splits the rest into independent blocks; each block's programme stays loaded in HiGHS
between objectives, and the feasible points found are kept, so a count they already show high
and low needs no programme. A long calendar or a large cross-tabulation costs little more than
its busy parts.

Means, percentiles and histogram bins of a group whose count is hidden are hidden with it;
percentages are computed from shown counts only, so they reveal nothing the counts do not.

References
----------
All of Us Research Program, Data and Statistics Dissemination Policy (counts 1-20).
CMS, Cell Size Suppression Policy (cells 1-10). OpenSAFELY, Output checking: redact <= 7, round to
the nearest 5. UK Biobank, Data Access Guide (minimum cell size 5). Hundepool A, Domingo-Ferrer
J, Franconi L, et al. (2012), Statistical Disclosure Control, Wiley, ch. 4 (cell suppression,
audit by linear programming; sec. 4.6, linked tables).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import param


class _OnFirstUse:
    """A module imported when first used: SciPy's solvers take a third of a second to import,
    and the command line reads this module's profiles for its --profile choices."""

    def __init__(self, name: str):
        self._name, self._module = name, None

    def __getattr__(self, attribute):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


optimize, sparse, csgraph = _OnFirstUse("scipy.optimize"), _OnFirstUse("scipy.sparse"), _OnFirstUse("scipy.sparse.csgraph")

from explorer.errors import ExplorerError, did_you_mean

COMPLEMENTARY_LABEL = "suppressed"
HIDDEN = ("primary", "complementary")
UNPUBLISHED = "unpublished"  # a count the page does not show, audited because a reader can derive it


@dataclass(frozen=True)
class Profile:
    """A disclosure-control policy: which counts are hidden and how shown ones are rounded.

    Attributes
    ----------
    name, title : str
        Key in :data:`PROFILES` and the name shown.
    smallest_hidden, largest_hidden : int
        Counts (persons) from ``smallest_hidden`` to ``largest_hidden`` are hidden (primary
        suppression or redaction).
    label : str
        What a hidden small count shows ("<=20").
    rounding : int
        Shown counts are rounded to a multiple of this (1: not rounded).
    reference : str
        The policy.

    Examples
    --------
    >>> from explorer.privacy import PROFILES
    >>> aou = PROFILES["aou"]
    >>> aou.hides(20), aou.hides(21), aou.minimum_shown, aou.label
    (True, False, 21, '<=20')
    >>> PROFILES["opensafely"].round(12), PROFILES["opensafely"].round(13)
    (10.0, 15.0)
    """

    name: str
    title: str
    smallest_hidden: int  # counts from here ...
    largest_hidden: int  # ... to here are hidden (primary suppression or redaction)
    label: str  # what a hidden small count shows
    rounding: int = 1  # shown counts are rounded to a multiple of this
    reference: str = ""

    def hides(self, count: float) -> bool:
        """Whether ``count`` is in the hidden range (primary suppression)."""
        return self.smallest_hidden <= count <= self.largest_hidden

    def round(self, count: float) -> float:
        """Round half up to the profile's multiple (OpenSAFELY: 12 -> 10, 13 -> 15)."""
        return float(math.floor(count / self.rounding + 0.5) * self.rounding) if self.rounding > 1 else float(count)

    @property
    def minimum_shown(self) -> int:
        """The smallest count a group must have for its statistics to be shown."""
        return self.largest_hidden + 1


PROFILES = {
    "aou": Profile("aou", "All of Us", 1, 20, "<=20", reference="All of Us Data and Statistics Dissemination Policy"),
    "cms": Profile("cms", "CMS", 1, 10, "<11", reference="CMS Cell Size Suppression Policy"),
    "opensafely": Profile("opensafely", "OpenSAFELY", 0, 7, "[REDACTED]", rounding=5,
                          reference="OpenSAFELY output checking: redact <= 7, round to the nearest 5"),
    "ukbiobank": Profile("ukbiobank", "UK Biobank", 1, 4, "<5", reference="UK Biobank minimum cell size 5"),
}


#: names the profile public views use when none is given (``explorer serve --profile`` sets it)
PROFILE_ENV = "EXPLORER_DISCLOSURE_PROFILE"


def default_profile() -> str:
    """``$EXPLORER_DISCLOSURE_PROFILE`` if set (checked), else ``"aou"``."""
    import os

    name = os.environ.get(PROFILE_ENV) or "aou"
    return profile(name).name


def profile(name: str | Profile) -> Profile:
    """The profile called ``name`` (one of :data:`PROFILES`).

    Parameters
    ----------
    name : str or Profile
        "aou", "cms", "opensafely" or "ukbiobank"; a Profile is returned as it is.

    Returns
    -------
    Profile

    Raises
    ------
    explorer.errors.ExplorerError
        An unknown name, with the closest known one.

    Examples
    --------
    >>> from explorer.privacy.disclosure import profile
    >>> profile("cms").label
    '<11'
    """
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ExplorerError(f"disclosure profile {name!r} is unknown; use one of {', '.join(PROFILES)}"
                            f"{did_you_mean(name, PROFILES)}")
    return PROFILES[name]


@dataclass
class Release:
    """A protected page: one frame per requested grouping, in the order asked for.

    Each frame has the grouping columns, then ``count`` (the value shown, NaN when hidden),
    ``shown`` (the text a reader sees) and ``status`` (``shown``, ``rounded``, ``primary``,
    ``complementary``, or ``recomputed``: under a rounding profile, a total summed from the
    rounded counts of a finer table on the page). See :meth:`DisclosureControl.counts`."""

    profile: Profile
    tables: list[pd.DataFrame]
    groupings: list[tuple[str, ...]] = field(default_factory=list)
    _audit: object = field(default=None, repr=False)
    _status: object = field(default=None, repr=False)

    def table(self, *grouping: str) -> pd.DataFrame:
        """The frame of ``grouping`` (no argument: the total).

        Parameters
        ----------
        *grouping : str
            The grouping's column names, as given to :meth:`DisclosureControl.counts`.

        Returns
        -------
        pandas.DataFrame
            The grouping columns, ``count`` (persons shown, NaN when hidden), ``shown`` (text)
            and ``status``.
        """
        try:
            return self.tables[self.groupings.index(tuple(grouping))]
        except ValueError:
            raise ExplorerError(f"this release has no table grouped by {grouping!r}; it has "
                                f"{', '.join(map(str, self.groupings))}") from None

    @property
    def hidden(self) -> int:
        """How many published counts are hidden."""
        return int(sum(t["status"].isin(["primary", "complementary"]).sum() for t in self.tables))

    def facts(self, *grouping: str) -> dict:
        """What this page published of each count of ``grouping``, as :class:`Fact` objects keyed
        by level (a tuple of levels for several columns, ``()`` for the total), for another page
        that shows the same counts to take as known. A hidden count's range is audited here."""
        table = self.table(*grouping)
        start = sum(len(t) for t in self.tables[:self.groupings.index(tuple(grouping))])
        out = {}
        for i, record in enumerate(table.to_dict("records")):
            key = tuple(record[c] for c in grouping)
            key = key[0] if len(grouping) == 1 else key
            if record["status"] == UNPUBLISHED:
                continue
            out[key] = _fact(self.profile, self._audit, self._status, start + i, record)
        return out


@dataclass(frozen=True)
class Fact:
    """A count one page published, as its reader knows it, for another page that shows it again
    (the lake's total on every page, a group's size beside its attrition).

    ``status``, ``shown`` and ``count`` are what the first page shows; ``low`` and ``high`` the
    least and greatest value a reader of that page can give it: the count itself when shown, its
    rounding interval when rounded, the range the first page's audit left it when hidden. The
    second page shows it the same way, never hides it anew (its text is out already), and audits
    with ``[low, high]`` as known; a hidden one must keep that whole range there too, so that the
    two pages together tell no more of it than the first alone. ``value`` is the true count: a
    fact stays on the server."""

    value: float
    status: str
    shown: str
    count: float
    low: float
    high: float

    @property
    def hidden(self) -> bool:
        """Whether the first page hid the count (primary or complementary)."""
        return self.status in HIDDEN


def _fact(rules: Profile, audit, status, k: int, record: dict | None = None) -> Fact:
    value = float(audit.values[k])
    own = status[k]
    if k in audit.facts:
        return audit.facts[k]
    shown = np.nan if own in HIDDEN else rules.round(value)
    text = (rules.label if own == "primary" else COMPLEMENTARY_LABEL if own == "complementary" else _text(shown))
    if record is not None:
        shown, text = record["count"], record["shown"]
    if own == "shown":
        low = high = value
    elif own in ("rounded", "recomputed"):
        half = (rules.rounding - 1) // 2
        low, high = max(rules.round(value) - half, 0), rules.round(value) + half
    else:
        low, high = audit.range(k, status)
        low = max(low, rules.smallest_hidden if own == "primary" else rules.largest_hidden + 1)
        if own == "primary":
            high = min(high, rules.largest_hidden)
    return Fact(value, str(own if record is None else record["status"]), str(text), float(shown), float(low), float(high))


class LinkedPage:
    """Counts shown together whose cells are linked: the groups of a cohort page (a cohort, the
    persons outside it and the lake), the days of a calendar (persons who entered or left a heat
    wave between two days). Build it, then :meth:`DisclosureControl.protect` it.

    Cells are the unknowns a reader would solve for (counts of persons, never negative); each
    count is a sum of cells, shown (published), derivable but not shown (``published=False``:
    audited so that a small one stays open, as the persons outside a cohort), or published by
    another page (``fact``). :meth:`link` adds an equation between cells (the lake's persons
    are the cohort's and the others'; today's persons are yesterday's plus those who came less
    those who went).

    Examples
    --------
    >>> page = LinkedPage()
    >>> inside, outside = page.cell(138), page.cell(12)
    >>> lake = page.count([inside, outside])
    >>> cohort = page.count([inside])
    >>> others = page.count([outside], published=False)
    >>> release = DisclosureControl(profile="aou").protect(page)
    >>> release.shown[lake], release.shown[cohort]  # both shown would give the 12 others away
    ('150', 'suppressed')
    """

    def __init__(self):
        self.truth: list[float] = []
        self.entries: list[np.ndarray] = []
        self.values: list[float] = []
        self.published: list[bool] = []
        self.facts: dict[int, Fact] = {}
        self._index: dict[tuple, int] = {}
        self._links: list[tuple[np.ndarray, np.ndarray]] = []

    def cell(self, value: float) -> int:
        """A new unknown cell whose true count is ``value``; returns its index."""
        self.truth.append(float(value))
        return len(self.truth) - 1

    def cells(self, values) -> np.ndarray:
        """New unknown cells, one per value of ``values`` (true counts); returns their indices."""
        return np.array([self.cell(v) for v in values], dtype=int)

    def count(self, cells, *, published: bool = True, fact: Fact | None = None) -> int | None:
        """A count that sums ``cells``; returns its index (None for a sum of no cells: nothing
        to count). The same cells counted twice are one count (one status, one text): shown
        once, shown everywhere."""
        cells = np.unique(np.asarray(cells, dtype=int))
        if not len(cells):
            return None
        key = tuple(cells)
        if key in self._index:
            k = self._index[key]
            self.published[k] = self.published[k] or published or fact is not None
            if fact is not None and k not in self.facts:
                self.facts[k] = fact
            return k
        k = len(self.entries)
        self._index[key] = k
        self.entries.append(cells)
        self.values.append(float(sum(self.truth[c] for c in cells)))
        self.published.append(published or fact is not None)
        if fact is not None:
            self.facts[k] = fact
        return k

    def link(self, plus, minus=()) -> None:
        """An equation: the cells ``plus`` sum to the cells ``minus``."""
        plus, minus = np.asarray(plus, dtype=int), np.asarray(minus, dtype=int)
        self._links.append((np.concatenate([plus, minus]), np.concatenate([np.ones(len(plus)), -np.ones(len(minus))])))

    def _link_matrix(self) -> sparse.csr_matrix | None:
        if not self._links:
            return None
        rows = np.repeat(np.arange(len(self._links)), [len(c) for c, _ in self._links])
        return sparse.csr_matrix((np.concatenate([v for _, v in self._links]), (rows, np.concatenate([c for c, _ in self._links]))),
                                 shape=(len(self._links), len(self.truth)))


@dataclass
class PageRelease:
    """A protected :class:`LinkedPage`: per count (by the index :meth:`LinkedPage.count` gave),
    ``status``, ``count`` (the value shown, NaN when hidden or not shown) and ``shown`` (text)."""

    profile: Profile
    status: np.ndarray
    count: np.ndarray
    shown: list
    _audit: object = field(default=None, repr=False)

    def hides(self, k) -> bool:
        """Whether count ``k`` is not shown (hidden, or not published); None (a count of
        nobody) is shown, as 0."""
        return k is not None and self.status[k] in (*HIDDEN, UNPUBLISHED)

    def text(self, k, zero: str = "0") -> str:
        """The text shown for count ``k`` (``zero`` for None, a count of nobody)."""
        return zero if k is None else self.shown[k]

    def value(self, k) -> float:
        """The value shown for count ``k`` (NaN when hidden; 0 for None)."""
        return 0.0 if k is None else self.count[k]

    def fact(self, k) -> Fact:
        """What this page published of count ``k``, for a page that shows it again."""
        return _fact(self.profile, self._audit, self.status, k)


class DisclosureControl(param.Parameterized):
    """The one policy object every public count passes.

    Examples
    --------
    >>> rows = pd.DataFrame({"sex": ["f"] * 30 + ["m"] * 25 + ["x"] * 3})
    >>> page = DisclosureControl(profile="ukbiobank").counts(rows, [("sex",), ()])
    >>> page.table("sex")["shown"].tolist()  # with the total shown, m would give x away
    ['30', 'suppressed', '<5']
    >>> page.table()["shown"].tolist()
    ['58']
    """

    profile = param.Selector(default="aou", objects=list(PROFILES),
                             doc="Disclosure-control rules: aou (All of Us, no count 1-20), cms (no cell 1-10), "
                                 "opensafely (redact <= 7, round to 5), ukbiobank (minimum 5).")

    def __init__(self, **params):
        params.setdefault("profile", default_profile())
        if params["profile"] not in PROFILES:
            profile(params["profile"])  # the clear message, not param's
        super().__init__(**params)

    @property
    def rules(self) -> Profile:
        """The :class:`Profile` selected by ``profile``."""
        return PROFILES[self.profile]

    # ------------------------------------------------------------------ counts
    def counts(self, rows: pd.DataFrame, groupings, *, weight: str | None = None, known=None,
               unpublished=None) -> Release:
        """Protected counts of ``rows`` for each grouping in ``groupings`` (tuples of column
        names; ``()`` is the total), all shown on one page.

        ``rows`` is one row per unit counted (persons, say), or finest counts with their number in
        the ``weight`` column (what a SQL ``GROUP BY`` returns).

        Parameters
        ----------
        rows : pandas.DataFrame
            One row per person, or finest counts with ``weight``; no grouping column may be
            missing (label missing values first).
        groupings : iterable of tuple of str
            The tables on the page: each a tuple of columns, ``()`` for the total.
        weight : str, optional
            Column holding the number of persons of each row.
        known : dict, optional
            Counts another page already published, as ``{grouping: {key: Fact}}`` (``key``: the
            levels of the grouping, a tuple, or the level itself for one column; ``()`` for the
            total): shown as that page shows them, never hidden anew, and audited as known.
        unpublished : dict, optional
            ``{grouping: mask}``: the counts of the grouping for which ``mask(frame)`` is True are
            not shown (status ``unpublished``, text empty) but a reader may derive them (the cells
            of a group nobody can select), so the audit keeps a small one open as if hidden.

        Returns
        -------
        Release
            One frame per grouping, in the order asked for, with ``count``, ``shown`` and
            ``status``.

        Notes
        -----
        Primary suppression, audit by linear programming and complementary suppression, as
        the module notes describe (Hundepool et al. 2012, ch. 4).

        Examples
        --------
        >>> import pandas as pd
        >>> from explorer.privacy import DisclosureControl
        >>> rows = pd.DataFrame({"sex": ["f"] * 30 + ["m"] * 25 + ["x"] * 3})
        >>> page = DisclosureControl(profile="ukbiobank").counts(rows, [("sex",), ()])
        >>> page.table("sex")
          sex  count       shown         status
        0   f   30.0          30          shown
        1   m    NaN  suppressed  complementary
        2   x    NaN          <5        primary
        >>> page.hidden
        2
        """
        groupings = [tuple(g) for g in groupings]
        dims = list(dict.fromkeys(d for g in groupings for d in g))
        missing = [d for d in dims if d not in rows.columns]
        if missing:
            raise ExplorerError(f"cannot count by {', '.join(missing)}: the rows have columns {', '.join(map(str, rows.columns))}")
        levels = [pd.Index(pd.unique(rows[d].dropna())).sort_values() for d in dims]
        if rows[dims].isna().any().any():
            bad = [d for d in dims if rows[d].isna().any()]
            raise ExplorerError(f"cannot count rows whose {', '.join(bad)} is missing: label them (say 'unknown') first, "
                                "so that they are counted and protected like any group")
        finest = self._finest(rows, dims, levels, weight)
        entries, tables, published, facts = [], [], [], {}
        known = {tuple(g): v for g, v in (known or {}).items()}
        unpublished = {tuple(g): v for g, v in (unpublished or {}).items()}
        for grouping in groupings:
            frame, members = _marginal(finest, dims, levels, grouping)
            hidden = (np.asarray(unpublished[grouping](frame), dtype=bool) if grouping in unpublished
                      else np.zeros(len(frame), dtype=bool))
            for i, record in enumerate(frame[list(grouping)].itertuples(index=False, name=None)):
                key = record if len(grouping) != 1 else record[0]
                fact = known.get(grouping, {}).get(key, known.get(grouping, {}).get(record))
                if fact is not None:
                    facts[len(entries) + i] = fact
            entries.extend(members)
            published.extend(~hidden)
            tables.append(frame)
        values = np.concatenate([t["_true"].to_numpy(float) for t in tables]) if tables else np.zeros(0)
        status, audit = self._run(values, entries, finest.size, published=published, facts=facts, truth=finest.ravel())
        tables = self._present(tables, status, facts)
        if self.rules.rounding > 1:
            _recompute_totals(tables, groupings, self.rules)
            start = 0
            for frame in tables:  # a count published elsewhere keeps its text there
                for k in range(start, start + len(frame)):
                    if k in facts:
                        row = frame.index[k - start]
                        frame.loc[row, ["count", "shown", "status"]] = [facts[k].count, facts[k].shown, facts[k].status]
                start += len(frame)
        return Release(self.rules, tables, groupings, _audit=audit, _status=status)

    def crosstab(self, rows: pd.DataFrame, index: str, columns: str, *, weight: str | None = None) -> pd.DataFrame:
        """A protected two-way table of counts with its margins ("Total"), as the text shown.

        Margins are part of the page (so a hidden cell cannot be solved from them); under a
        rounding profile they are the sums of the rounded cells shown, as OpenSAFELY asks.

        Parameters
        ----------
        rows : pandas.DataFrame
            One row per person (or finest counts with ``weight``).
        index, columns : str
            The row and column variables.
        weight : str, optional
            Column holding the number of persons of each row.

        Returns
        -------
        pandas.DataFrame
            The text shown, levels of ``index`` by levels of ``columns``, with a "Total" row and
            column.

        Examples
        --------
        >>> import pandas as pd
        >>> from explorer.privacy import DisclosureControl
        >>> rows = pd.DataFrame({"sex": ["f"] * 30 + ["m"] * 25, "site": ["A"] * 20 + ["B"] * 10 + ["A"] * 22 + ["B"] * 3})
        >>> DisclosureControl(profile="ukbiobank").crosstab(rows, "sex", "site")
        site            A           B Total
        sex
        f      suppressed  suppressed    30
        m      suppressed          <5    25
        Total          42          13    55
        """
        page = self.counts(rows, [(index, columns), (index,), (columns,), ()], weight=weight)
        out = page.table(index, columns).pivot(index=index, columns=columns, values="shown")
        out["Total"] = page.table(index).set_index(index)["shown"]
        total_row = page.table(columns).set_index(columns)["shown"]
        total_row["Total"] = page.table()["shown"].iloc[0]
        out.loc["Total"] = total_row
        return out

    def protect(self, page: LinkedPage) -> PageRelease:
        """Protect a :class:`LinkedPage`: primary suppression of the small counts shown, then the
        audit (with the page's links, the counts it derives but does not show, and the facts of
        other pages) and complementary suppression until no count can be narrowed.

        Notes
        -----
        Linked tables (Hundepool et al. 2012, sec. 4.6): tables that share cells, or whose cells
        are tied by equations, are protected as one, since a cell hidden in one table can be
        solved from another. Here the cells are the finest groups a reader could solve for
        (persons inside and outside a cohort, by feature level; those who stayed, entered or left
        between two days) and a count a reader derives (the lake's count less the cohort's) is
        audited like a hidden small count although no table shows it.

        Parameters
        ----------
        page : LinkedPage
            The counts, their cells, links and facts.

        Returns
        -------
        PageRelease
            Per count (by the index :meth:`LinkedPage.count` gave): status, count shown, text.

        References
        ----------
        Hundepool A, Domingo-Ferrer J, Franconi L, et al. Statistical Disclosure Control. Wiley,
        2012, sec. 4.6.

        Examples
        --------
        See :class:`LinkedPage`.
        """
        values = np.asarray(page.values, dtype=float)
        status, audit = self._run(values, page.entries, len(page.truth), published=page.published, facts=page.facts,
                                  links=page._link_matrix(), truth=page.truth)
        rules = self.rules
        count = np.array([rules.round(v) if s in ("shown", "rounded") else np.nan for v, s in zip(values, status)])
        shown = [_text(v) if s in ("shown", "rounded") else rules.label if s == "primary" else
                 COMPLEMENTARY_LABEL if s == "complementary" else "" for v, s in zip(count, status)]
        for k, fact in page.facts.items():
            count[k], shown[k] = fact.count, fact.shown
        return PageRelease(rules, status, count, shown, audit)

    def lone(self, value: float) -> Fact:
        """A count shown on its own (the persons in the lake), as a :class:`Fact` every page that
        shows it again takes as it is.

        Parameters
        ----------
        value : float
            The true count (persons).

        Returns
        -------
        Fact

        Examples
        --------
        >>> from explorer.privacy import DisclosureControl
        >>> control = DisclosureControl(profile="aou")
        >>> control.lone(150).shown, control.lone(12).shown, control.lone(12).hidden
        ('150', '<=20', True)
        """
        page = LinkedPage()
        k = page.count([page.cell(value)])
        return self.protect(page).fact(k)

    def percentages(self, table: pd.DataFrame, of: tuple[str, ...] | list[str] = ()) -> pd.Series:
        """Percent of each count in ``table`` (a frame of a :class:`Release`) within its group
        ``of`` (default: the whole table), from the counts shown only: a hidden count has no
        percentage, and a group with a hidden count gives none for any of its members.

        Parameters
        ----------
        table : pandas.DataFrame
            A frame of a :class:`Release` (with ``count``).
        of : sequence of str, default ()
            Columns of the groups the percentages are within.

        Returns
        -------
        pandas.Series
            ``percent`` (0 to 100), NaN where a count of the group is hidden.

        Notes
        -----
        :math:`100\\,n_i / \\sum_{j \\in g(i)} n_j` over the shown counts of the group.

        Examples
        --------
        >>> import pandas as pd
        >>> from explorer.privacy import DisclosureControl
        >>> control = DisclosureControl(profile="ukbiobank")
        >>> page = control.counts(pd.DataFrame({"sex": ["f"] * 30 + ["m"] * 20}), [("sex",), ()])
        >>> control.percentages(page.table("sex")).tolist()
        [60.0, 40.0]
        """
        of = list(of)
        shown = table["count"]
        if of:
            total = shown.groupby([table[c] for c in of]).transform(lambda s: s.sum() if s.notna().all() else np.nan)
        else:
            total = pd.Series(shown.sum() if shown.notna().all() else np.nan, index=table.index)
        return (100.0 * shown / total.where(total > 0)).rename("percent")

    def attrition(self, remaining, *, known=None) -> pd.DataFrame:
        """A protected attrition table: ``remaining[k]`` persons left after step ``k``
        (non-increasing; ``remaining[0]`` is everyone).

        The page shows each remaining count and each step's removed count (``remaining[k-1] -
        remaining[k]``, itself a count of persons with a characteristic), so both are published
        counts over the same finest cells, the persons removed at each step and those kept. A
        small number removed is hidden, and so is a remaining count next to it when the two
        neighbours would give it away. The groups are nested, so the persons removed by several
        steps together (``remaining[j] - remaining[k]``) are a count a reader derives: it is
        audited too, and a small one kept open.

        ``known`` maps a step to the :class:`Fact` another page published of its remaining count
        (step 0, everyone in the lake, is the lake's published total): shown as published there,
        never hidden anew.

        Parameters
        ----------
        remaining : sequence of int
            Persons remaining after each step.
        known : dict of int to Fact, optional
            As above.

        Returns
        -------
        pandas.DataFrame
            One row per step: ``persons``, ``persons_shown``, ``persons_status``, ``removed``,
            ``removed_shown``, ``removed_status`` (step 0 removes nothing: its removed is NaN).

        Examples
        --------
        >>> from explorer.privacy import DisclosureControl
        >>> table = DisclosureControl(profile="aou").attrition([1000, 120, 112])
        >>> table[["persons_shown", "removed_shown"]]
          persons_shown removed_shown
        0          1000
        1           120           880
        2    suppressed          <=20
        """
        remaining = np.asarray(remaining, dtype=float)
        if remaining.ndim != 1 or not len(remaining) or np.any(np.diff(remaining) > 0) or np.any(remaining < 0):
            raise ExplorerError(f"attrition counts must be non-negative and never grow from step to step, got {remaining.tolist()}")
        n = len(remaining)
        spans = [(j, k) for j in range(n) for k in range(j + 2, n)]  # removed by steps j+1..k together
        entries = ([np.arange(k, n) for k in range(n)] + [np.array([k - 1]) for k in range(1, n)]
                   + [np.arange(j, k) for j, k in spans])
        values = np.concatenate([remaining, remaining[:-1] - remaining[1:], [remaining[j] - remaining[k] for j, k in spans]])
        published = np.arange(len(values)) < 2 * n - 1
        facts = {int(step): fact for step, fact in (known or {}).items()}

        def neighbour(k, values, status, matrix, overlap):
            # the counts in the two equations of a step (before = removed + after): hiding the
            # smaller shown neighbour keeps the rest of the chain readable; the total comes last
            def remaining_at(step):
                return step if 0 <= step < n else None

            def removed_at(step):  # the entry of the count removed by step ``step`` (1..n-1)
                return n + step - 1 if 1 <= step < n else None

            if k < n:
                near = [removed_at(k), remaining_at(k - 1), removed_at(k + 1), remaining_at(k + 1)]
            elif k < 2 * n - 1:
                near = [remaining_at(k - n), remaining_at(k - n + 1)]
            else:  # several steps together: their two ends, then the steps between
                j, last = spans[k - 2 * n + 1]
                near = [remaining_at(j), remaining_at(last)] + [removed_at(step) for step in range(j + 1, last + 1)]
            near = [j for j in near if j is not None and j not in facts]
            candidates = [j for j in near if status[j] in ("shown", "rounded") and values[j] > 0]
            if any(j != 0 for j in candidates):
                return min((j for j in candidates if j != 0), key=lambda j: (values[j], j))
            if k not in waited and any(status[j] in ("primary", "complementary") for j in near):
                waited.add(k)  # a neighbour hidden this round may be enough: the next audit tells
                return None
            return 0 if candidates else _complement(k, values, status, matrix, overlap, frozenset(facts))

        waited: set[int] = set()

        truth = np.concatenate([remaining[:-1] - remaining[1:], remaining[-1:]])
        status, _ = self._run(values, entries, n, complement=neighbour, published=published, facts=facts, truth=truth)
        status = status[:2 * n - 1]
        rules = self.rules
        shown = np.array([rules.round(v) if s in ("shown", "rounded") else np.nan for v, s in zip(values, status)])
        text = [_text(v) if s in ("shown", "rounded") else rules.label if s == "primary" else COMPLEMENTARY_LABEL
                for v, s in zip(shown, status)]
        for k, fact in facts.items():
            shown[k], text[k] = fact.count, fact.shown
        nan = [np.nan]
        return pd.DataFrame({
            "persons": shown[:n], "persons_shown": text[:n], "persons_status": status[:n],
            "removed": np.concatenate([nan, shown[n:]]), "removed_shown": [""] + text[n:],
            "removed_status": ["", *status[n:]],
        })

    # ------------------------------------------------------------- statistics
    def statistics(self, rows: pd.DataFrame, by: str | list[str], value: str,
                   quantiles=(0.25, 0.5, 0.75)) -> pd.DataFrame:
        """Per group of ``by``: the protected number of rows with a value, and the mean and
        ``quantiles`` of ``value``, hidden (NaN) for a group in the profile's small range.
        Rows without a value are not counted (they tell nothing of it).

        Parameters
        ----------
        rows : pandas.DataFrame
            One row per person.
        by : str or list of str
            The grouping columns.
        value : str
            The variable summarised (its unit is kept).
        quantiles : sequence of float, default (0.25, 0.5, 0.75)
            Quantiles reported as ``p25``, ``p50``, ...

        Returns
        -------
        pandas.DataFrame
            Per group: the grouping columns, ``count``, ``shown``, ``status`` (as
            :meth:`counts`), ``mean`` and the quantiles, in ``value``'s unit.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> from explorer.privacy import DisclosureControl
        >>> rows = pd.DataFrame({"sex": ["f"] * 30 + ["m"] * 5, "hr": np.r_[np.arange(60, 90), np.arange(50, 55)]})
        >>> DisclosureControl(profile="aou").statistics(rows, "sex", "hr")[["sex", "shown", "mean", "p50"]]
          sex       shown  mean   p50
        0   f  suppressed  74.5  74.5
        1   m        <=20   NaN   NaN

        (30 is hidden only so that the total does not give the 5 away: the group is large, so
        its statistics stay.)
        """
        by = [by] if isinstance(by, str) else list(by)
        valued = rows.dropna(subset=[value])
        page = self.counts(valued, [tuple(by), ()])
        stats = valued.groupby(by, observed=True)[value].agg(["mean"])
        for q in quantiles:
            stats[f"p{round(q * 100):g}"] = valued.groupby(by, observed=True)[value].quantile(q)
        out = page.table(*by).merge(stats.reset_index(), on=by, how="left")
        # a shown count is 0 or above the hidden range, and a complementary one above it too
        # (hidden only to protect another), so only a primary hidden group loses its statistics
        out.loc[out["status"] == "primary", stats.columns] = np.nan
        return out

    def histogram(self, values, bins) -> pd.DataFrame:
        """Protected counts of ``values`` in ``bins`` (edges, as ``numpy.histogram`` takes them),
        with the total on the same page (``attrs["total"]``, NaN when hidden): a hidden bin
        cannot be recovered from the total.

        Parameters
        ----------
        values : array-like of float
            One value per person (non-finite values are left out).
        bins : int or sequence of float
            As ``numpy.histogram`` takes them (fixed edges, so that no edge is anyone's value).

        Returns
        -------
        pandas.DataFrame
            Per bin: ``bin``, ``left``, ``right`` (in the values' unit), ``count``, ``shown``,
            ``status``.

        Examples
        --------
        >>> import numpy as np
        >>> from explorer.privacy import DisclosureControl
        >>> values = np.r_[np.full(30, 65.0), np.full(20, 75.0), np.full(3, 95.0)]
        >>> histogram = DisclosureControl(profile="ukbiobank").histogram(values, [60, 70, 80, 90, 100])
        >>> histogram["shown"].tolist(), float(histogram.attrs["total"])
        (['30', 'suppressed', '0', '<5'], 53.0)
        """
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        counts, edges = np.histogram(values, bins=bins)
        finest = pd.DataFrame({"bin": np.arange(len(counts)), "n": counts})
        page = self.counts(finest, [("bin",), ()], weight="n")
        out = page.table("bin")
        out.insert(1, "left", edges[:-1][out["bin"].to_numpy()])
        out.insert(2, "right", edges[1:][out["bin"].to_numpy()])
        out.attrs["total"] = page.table()["count"].iloc[0]  # as the page shows it: NaN when hidden
        return out

    # -------------------------------------------------------------- internals
    def _finest(self, rows, dims, levels, weight) -> np.ndarray:
        """Counts of every combination of levels (zeros included), as a flat array."""
        shape = tuple(len(level) for level in levels)
        if not dims:
            return np.array([rows[weight].sum() if weight else len(rows)], dtype=float)
        codes = [level.get_indexer(rows[d]) for d, level in zip(dims, levels)]
        flat = np.ravel_multi_index(codes, shape) if len(rows) else np.zeros(0, dtype=int)
        weights = rows[weight].to_numpy(float) if weight else None
        if weights is not None and (np.any(weights < 0) or np.any(weights != np.round(weights))):
            raise ExplorerError(f"column {weight!r} must hold whole, non-negative counts")
        return np.bincount(flat, weights=weights, minlength=int(np.prod(shape))).astype(float).reshape(shape)

    def _protect(self, values: np.ndarray, entries: list[np.ndarray], n_cells: int, complement=None, **linked) -> np.ndarray:
        return self._run(values, entries, n_cells, complement, **linked)[0]

    def _run(self, values, entries, n_cells: int, complement=None, *, published=None, facts=None, links=None,
             truth=None) -> tuple[np.ndarray, _Audit]:
        """The status of every entry of a page, and the audit that decided it.

        ``entries[k]`` lists the cells count ``k`` sums (or is a sparse row of coefficients);
        ``published[k]`` is False for a count the page does not show but a reader can derive (it
        is only audited); ``facts`` maps an entry to the :class:`Fact` another page published for
        it (kept as published there, never chosen to hide, and not narrowed when hidden); ``links``
        is a sparse matrix of equations between cells (each row sums to zero); ``truth`` the
        cells' true counts (a first feasible point for the audit)."""
        rules = self.rules
        facts = dict(facts or {})
        values = np.asarray(values, dtype=float)
        published = np.ones(len(values), dtype=bool) if published is None else np.asarray(published, dtype=bool)
        status = np.where([rules.hides(v) for v in values], "primary", "rounded" if rules.rounding > 1 else "shown").astype(object)
        status[~published] = UNPUBLISHED
        for k, fact in facts.items():
            status[k] = fact.status
        matrix = _entry_matrix(entries, n_cells)
        links = None if links is None or links.shape[0] == 0 else sparse.csr_matrix(links)
        audit = _Audit(matrix, links, rules, values, published, facts, truth)
        if not len(values) or not n_cells:  # nothing counted: no cell to solve for
            return status, audit
        pattern = matrix.copy()
        pattern.data = np.ones_like(pattern.data)
        overlap = (pattern @ pattern.T).tocsr()  # entries sharing a cell: they appear in one equation
        if complement is None:
            plain = links is None and published.all() and not facts
            locked, waited = _Locked(facts, audit), set()
            if not plain:
                structure = _Structure(pattern, links)
                structure.pattern = pattern
            complement = _complement if plain else (
                lambda k, values, status, matrix, overlap: _linked_complement(k, values, status, structure, overlap, locked,
                                                                              waited, audit.given_away))
        # Hiding more only relaxes what a reader knows, so a count found safe stays safe: each
        # round audits only the counts exposed last round and the ones newly hidden.
        candidates = None
        stalled = False
        while True:
            exposed = audit.exposed(status, candidates)
            if not exposed:
                return status, audit
            before = set(np.flatnonzero(np.isin(status, HIDDEN)))
            touched = set()
            for k in exposed:  # one complement per equation each round; the next audit rechecks the rest
                if k in touched:
                    continue
                added = complement(k, values, status, pattern, overlap)
                if added is None or added in facts:
                    continue
                status[added] = "complementary"
                touched.update(overlap[added].indices)
            if set(np.flatnonzero(np.isin(status, HIDDEN))) == before:
                if not stalled:  # a complement chooser may have waited for this audit: ask it once more
                    stalled = True
                    candidates = sorted(exposed)
                    continue
                # nothing left to hide beside them: what remains is what the labels themselves say
                # ("<5" three times under a total of "<5"), and no release could say less
                return status, audit
            stalled = False
            candidates = sorted(set(exposed) | (set(np.flatnonzero(np.isin(status, HIDDEN))) - before))

    def _present(self, tables, status, facts=None) -> list[pd.DataFrame]:
        rules, out, start = self.rules, [], 0
        facts = facts or {}
        for frame in tables:
            own = status[start:start + len(frame)]
            true = frame.pop("_true").to_numpy(float)
            shown = np.array([rules.round(v) if s in ("shown", "rounded") else np.nan for v, s in zip(true, own)])
            text = [_text(v) if s in ("shown", "rounded") else rules.label if s == "primary" else
                    "" if s == UNPUBLISHED else COMPLEMENTARY_LABEL for v, s in zip(shown, own)]
            for k in range(start, start + len(frame)):
                if k in facts:  # as the page that published it shows it
                    shown[k - start], text[k - start] = facts[k].count, facts[k].shown
            frame["count"] = shown
            frame["shown"] = text
            frame["status"] = own
            out.append(frame)
            start += len(own)
        return out


def _recompute_totals(tables, groupings, rules) -> None:
    """Under a rounding profile, a table that totals a finer one on the page shows the sums of
    that table's rounded counts (OpenSAFELY: totals are recomputed from the rounded values, so
    they carry nothing the cells do not); a total of nothing shown shows the label."""
    for k, grouping in enumerate(groupings):
        finer = next((j for j, g in enumerate(groupings) if set(grouping) < set(g)), None)
        if finer is None:
            continue
        cells = tables[finer]
        if grouping:
            sums = cells.groupby(list(grouping))["count"].sum(min_count=1)
            recomputed = pd.MultiIndex.from_frame(tables[k][list(grouping)]) if len(grouping) > 1 else tables[k][grouping[0]]
            values = sums.reindex(recomputed).to_numpy()
        else:
            values = np.array([cells["count"].sum(min_count=1)])
        tables[k]["count"] = values
        tables[k]["shown"] = [rules.label if v != v else _text(v) for v in values]
        tables[k]["status"] = "recomputed"


def _marginal(finest: np.ndarray, dims, levels, grouping):
    """The counts of one grouping, and the flat indices of the finest cells each one sums."""
    keep = [dims.index(d) for d in grouping]
    drop = tuple(i for i in range(len(dims)) if i not in keep)
    summed = finest.sum(axis=drop) if drop else finest
    if len(keep) > 1:  # the sum keeps axes in the order of dims; put them in the grouping's order
        summed = np.transpose(summed, [sorted(keep).index(axis) for axis in keep])
    index = pd.MultiIndex.from_product([levels[i] for i in keep], names=list(grouping)) if grouping else None
    frame = (pd.DataFrame({"_true": np.ravel(summed)}, index=index).reset_index() if grouping
             else pd.DataFrame({"_true": [float(np.sum(finest))]}))
    cell_codes = np.indices(finest.shape).reshape(len(dims), -1) if dims else np.zeros((0, 1), dtype=int)
    members = []
    for combo in (np.ndindex(*[len(levels[i]) for i in keep]) if grouping else [()]):
        match = np.ones(cell_codes.shape[1], dtype=bool)
        for axis, code in zip(keep, combo):
            match &= cell_codes[axis] == code
        members.append(np.flatnonzero(match))
    return frame, members


def _entry_matrix(entries, n_cells: int) -> sparse.csr_matrix:
    """Entries as rows of a sparse matrix over the cells: lists of cells (coefficient 1), or
    sparse rows of coefficients."""
    if entries and sparse.issparse(entries[0]):
        return sparse.vstack(entries).tocsr().astype(float) if len(entries) else sparse.csr_matrix((0, n_cells))
    sizes = [len(e) for e in entries]
    return sparse.csr_matrix((np.ones(sum(sizes)), (np.repeat(np.arange(len(entries)), sizes),
                                                   np.concatenate(entries) if entries else np.zeros(0, dtype=int))),
                             shape=(len(entries), n_cells))


def _wide(rules) -> int:
    """How many whole values a small hidden count must keep open: half the hidden range."""
    return max(1, math.ceil((rules.largest_hidden - rules.smallest_hidden) / 2))


class _Audit:
    """What a reader of a page can work out: for each hidden count, the least and greatest value
    it can take given everything shown (linear programmes over the page's cells).

    A count hidden because it is small must keep a range at least half the hidden range wide
    (All of Us: 10 of 1-20), so "<=20" never reads as "2 or 3"; one hidden to protect another
    must keep at least two whole values; a count the page does not show but a reader can derive
    (the persons outside a cohort, those who entered a heat wave) is held to the rule of a small
    hidden count when it is small; and a count another page hid keeps the range that page left
    it (the two pages together then tell no more of it than that page alone)."""

    def __init__(self, matrix, links, rules, values, published, facts, truth=None):
        self.matrix, self.links, self.rules = matrix, links, rules
        self.values, self.published, self.facts = values, published, facts
        self.truth = None if truth is None else np.asarray(truth, dtype=float)
        self._systems: dict = {}

    def bounds(self, status):
        """Per entry, the least and greatest value its text (or fact) allows; NaN when the page
        says nothing of it (not shown)."""
        rules = self.rules
        lower = np.full(len(self.values), np.nan)
        upper = np.full(len(self.values), np.nan)
        for j, (v, s) in enumerate(zip(self.values, status)):
            if j in self.facts:
                lower[j], upper[j] = self.facts[j].low, self.facts[j].high
            elif s == "shown":
                lower[j] = upper[j] = v
            elif s == "rounded":
                value, half = rules.round(v), (rules.rounding - 1) // 2
                lower[j], upper[j] = max(value - half, 0), value + half
            elif s == "primary":
                lower[j], upper[j] = rules.smallest_hidden, rules.largest_hidden
            elif s == "complementary":  # a count that would have been shown, so above the hidden range
                lower[j], upper[j] = rules.largest_hidden + 1, np.inf
        return lower, upper

    def system(self, status) -> _System:
        key = tuple(status)
        if key not in self._systems:
            self._systems = {}  # statuses only ever grow more hidden: the last system is the one reused
            self._systems[key] = self._build(status)
        return self._systems[key]

    def _build(self, status) -> _System:
        lower, upper = self.bounds(status)
        said = ~np.isnan(lower)
        rows = self.matrix[np.flatnonzero(said)]
        lo, hi = lower[said], upper[said]
        if self.links is not None:
            rows = sparse.vstack([rows, self.links]).tocsr()
            lo = np.concatenate([lo, np.zeros(self.links.shape[0])])
            hi = np.concatenate([hi, np.zeros(self.links.shape[0])])
        return _System(rows, lo, hi, self.truth)

    def given_away(self, j, status) -> bool:
        """Whether count ``j``, hidden as a complement, would still be one value given the rest
        of the page (a cohort's persons with a value when none lacks one and its size is shown):
        hiding it would reopen nothing, and it would itself be exposed next round."""
        trial = np.array(status, dtype=object)
        trial[j] = "complementary"
        return self._build(trial).fixed_by(self.matrix[j])

    def requirement(self, k, status):
        """The test entry ``k``'s range must pass (None: no test)."""
        rules = self.rules
        if k in self.facts:
            fact = self.facts[k]
            if not fact.hidden or not fact.high > fact.low:
                return None
            low, high = math.ceil(fact.low - 1e-7), fact.high
            return lambda lo, hi: lo <= low + 1e-6 and (hi >= high - 1e-6 if high < np.inf else hi == np.inf)
        if status[k] == "primary" or (status[k] == UNPUBLISHED and rules.hides(self.values[k])):
            need = _wide(rules)
        elif status[k] == "complementary":
            need = 1
        else:
            return None
        return lambda lo, hi: hi == np.inf or (hi > -np.inf and math.floor(hi + 1e-7) - math.ceil(lo - 1e-7) >= need)

    def exposed(self, status, candidates=None) -> list[int]:
        """Entries whose range fails their test (among ``candidates``, default all)."""
        targets = range(len(self.values)) if candidates is None else candidates
        tests = {k: self.requirement(k, status) for k in targets}
        tests = {k: test for k, test in tests.items() if test is not None}
        if not tests:
            return []
        system = self.system(status)
        system.warm([self.matrix[k] for k in tests])
        return [int(k) for k, test in tests.items() if not system.passes(self.matrix[k], test)]

    def range(self, k, status) -> tuple[float, float]:
        """The least and greatest value entry ``k`` can take, given the page as ``status`` shows it."""
        return self.system(status).range(self.matrix[k])


class _System:
    """Linear constraints on a page's cells (all >= 0): row ``r``'s sum lies in ``[lo[r], hi[r]]``
    (an equation when they are equal).

    Before any programme is solved, cells the equations pin are substituted (a count shown as 0
    pins all its cells; an equation with one unknown pins it), and the remaining cells split into
    independent blocks (cells that share no constraint, directly or through others), so each least
    or greatest value is a programme over one block. Every solution found is kept as a feasible
    point of its block (the true counts are the first); a count whose range these points already
    show wide enough needs no programme at all."""

    def __init__(self, rows, lo, hi, truth=None):
        rows = sparse.csr_matrix(rows)
        self.rows, self.lo, self.hi = rows, np.asarray(lo, float), np.asarray(hi, float)
        n_rows, n_cells = rows.shape
        fixed = np.full(n_cells, np.nan)
        exact = np.isfinite(self.hi) & (self.lo == self.hi)
        by_cell = rows.tocsc()
        pending = list(np.flatnonzero(exact))
        queued = set(pending)
        while pending:
            r = pending.pop()
            queued.discard(r)
            cells = rows.indices[rows.indptr[r]:rows.indptr[r + 1]]
            coef = rows.data[rows.indptr[r]:rows.indptr[r + 1]]
            free = np.isnan(fixed[cells])
            if not free.any():
                continue
            rhs = self.lo[r] - np.dot(coef[~free], fixed[cells[~free]])
            if free.sum() == 1:
                fixed[cells[free]] = rhs / coef[free][0]
            elif abs(rhs) < 1e-9 and (np.all(coef[free] > 0) or np.all(coef[free] < 0)):
                fixed[cells[free]] = 0.0  # cells are never negative: a sum of 0 pins each
            else:
                continue
            for cell in cells[free]:
                for other in by_cell.indices[by_cell.indptr[cell]:by_cell.indptr[cell + 1]]:
                    if exact[other] and other not in queued:
                        pending.append(other)
                        queued.add(other)
        self.fixed = fixed
        self.free = np.flatnonzero(np.isnan(fixed))
        self.position = np.full(n_cells, -1)
        self.position[self.free] = np.arange(len(self.free))
        self.offset = rows @ np.nan_to_num(fixed)  # what the pinned cells add to each row
        sub = rows[:, self.free].tocsr()
        self.active = np.flatnonzero(np.diff(sub.indptr) > 0)
        self.sub = sub[self.active]
        n_free = len(self.free)
        incidence = self.sub.copy()
        incidence.data = np.ones_like(incidence.data)
        graph = sparse.bmat([[None, incidence.T], [incidence, None]], format="csr") if len(self.active) else \
            sparse.csr_matrix((n_free, n_free))
        _, labels = csgraph.connected_components(graph, directed=False)
        self.block = labels[:n_free]
        self.row_block = labels[n_free:]
        self.truth = None if truth is None else truth[self.free]
        self._programmes: dict = {}

    def _programme(self, blocks: tuple):
        if blocks not in self._programmes:
            cells = np.flatnonzero(np.isin(self.block, blocks))
            rows = np.flatnonzero(np.isin(self.row_block, blocks))
            lo = self.lo[self.active[rows]] - self.offset[self.active[rows]]
            hi = self.hi[self.active[rows]] - self.offset[self.active[rows]]
            pool = [self.truth[cells]] if self.truth is not None else []
            self._programmes[blocks] = {"cells": cells, "where": {c: i for i, c in enumerate(cells)}, "pool": pool,
                                        "solver": _Programme(self.sub[rows][:, cells], lo, hi), "warm": False}
        return self._programmes[blocks]

    def _objective(self, row):
        cells, coef = row.indices, row.data
        free = self.position[cells] >= 0
        constant = float(np.dot(coef[~free], self.fixed[cells[~free]]))
        if not free.any():
            return constant, None, None
        positions = self.position[cells[free]]
        programme = self._programme(tuple(np.unique(self.block[positions])))
        c = np.zeros(len(programme["cells"]))
        for p, value in zip(positions, coef[free]):
            c[programme["where"][p]] += value
        return constant, c, programme

    def _solve(self, c, programme, sign) -> float:
        value, x = programme["solver"].solve(sign * c)
        if x is None:  # unbounded: only a greatest value can be (the true counts are feasible)
            if sign > 0:
                raise ExplorerError("disclosure audit failed (a least value is unbounded); this is a bug, please report it")
            return np.inf
        programme["pool"].append(x)
        return sign * value

    def warm(self, rows) -> None:
        """Spread the feasible points of each block over the counts ``rows`` will test: a few
        programmes with random signs on them (seeded: the same page gives the same points), so
        that most counts are seen high and low before any programme of their own."""
        by_block: dict = {}
        for row in rows:
            constant, c, programme = self._objective(row)
            if c is not None and not programme["warm"]:
                by_block.setdefault(id(programme), (programme, []))[1].append(c)
        for programme, objectives in by_block.values():
            programme["warm"] = True
            if len(objectives) < 8:
                continue
            rng = np.random.default_rng(len(objectives))
            stacked = np.array(objectives)
            for _ in range(3):
                c = rng.choice([-1.0, 1.0], size=len(stacked)) @ stacked
                for sign in (1, -1):
                    _, x = programme["solver"].solve(sign * c)
                    if x is not None:  # unbounded one way: no point to keep
                        programme["pool"].append(x)

    def passes(self, row, test) -> bool:
        """Whether the range of the count ``row`` (a sparse row over the cells) passes ``test``."""
        constant, c, programme = self._objective(row)
        if c is None:
            return test(constant, constant)
        if programme["pool"]:
            seen = np.asarray(programme["pool"]) @ c
            least, greatest = seen.min(), seen.max()
            if test(constant + least, constant + greatest):
                return True
        else:
            least, greatest = np.inf, -np.inf
        least = min(least, self._solve(c, programme, 1))
        if test(constant + least, constant + greatest):
            return True
        greatest = max(greatest, self._solve(c, programme, -1))
        return test(constant + least, constant + greatest)

    def fixed_by(self, row) -> bool:
        """Whether the constraints leave the count ``row`` a single value (the points found so
        far usually show two at once, with no programme)."""
        constant, c, programme = self._objective(row)
        if c is None:
            return True
        if programme["pool"]:
            seen = np.asarray(programme["pool"]) @ c
            if seen.max() - seen.min() >= 0.5:
                return False
        return self._solve(c, programme, -1) - self._solve(c, programme, 1) < 0.5

    def range(self, row) -> tuple[float, float]:
        constant, c, programme = self._objective(row)
        if c is None:
            return constant, constant
        return constant + self._solve(c, programme, 1), constant + self._solve(c, programme, -1)


class _Locked:
    """The entries no complementary suppression may choose: facts of other pages (their text is
    out already), and counts those facts alone determine (the lake's persons with a sex at birth,
    when the overview shows each sex and the unknown): hiding one would tell a reader nothing."""

    def __init__(self, facts, audit):
        self.facts, self.audit, self._known = facts, audit, {}
        self._system = None

    def __contains__(self, j) -> bool:
        return j in self.facts

    def determined(self, j) -> bool:
        """Whether the facts alone give count ``j`` (hiding it would tell nothing)."""
        if not self.facts:
            return False
        if j not in self._known:
            if self._system is None:
                audit = self.audit
                rows = audit.matrix[sorted(self.facts)]
                lo = np.array([self.facts[k].low for k in sorted(self.facts)])
                hi = np.array([self.facts[k].high for k in sorted(self.facts)])
                if audit.links is not None:
                    zeros = np.zeros(audit.links.shape[0])
                    rows = sparse.vstack([rows, audit.links]).tocsr()
                    lo, hi = np.concatenate([lo, zeros]), np.concatenate([hi, zeros])
                self._system = _System(rows, lo, hi, audit.truth)
            self._known[j] = self._system.fixed_by(self.audit.matrix[j])
        return self._known[j]


class _Programme:
    """One block's linear programme, ``lo <= a @ x <= hi`` and ``x >= 0``, solved for one
    objective after another. HiGHS is kept loaded between objectives (each solve starts from the
    last basis, and no problem is parsed again); where scipy's build does not expose it, each
    objective is a call to :func:`scipy.optimize.linprog` (the same solver, slower to set up)."""

    def __init__(self, a, lo, hi):
        self.a, self.lo, self.hi = sparse.csr_matrix(a), np.asarray(lo, float), np.asarray(hi, float)
        self.highs = None
        try:
            from scipy.optimize._highspy import _core

            a = self.a.tocsc()
            lp = _core.HighsLp()
            lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
            lp.col_cost_ = np.zeros(a.shape[1])
            lp.col_lower_ = np.zeros(a.shape[1])
            lp.col_upper_ = np.full(a.shape[1], _core.kHighsInf)
            lp.row_lower_ = np.where(np.isfinite(self.lo), self.lo, -_core.kHighsInf)
            lp.row_upper_ = np.where(np.isfinite(self.hi), self.hi, _core.kHighsInf)
            lp.a_matrix_.format_ = _core.MatrixFormat.kColwise
            lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = a.shape[1], a.shape[0]
            lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
            highs = _core._Highs()
            for option, value in (("output_flag", False), ("threads", 1), ("presolve", "off")):
                highs.setOptionValue(option, value)
            if highs.passModel(lp) == _core.HighsStatus.kOk:
                self.highs, self.core, self.columns = highs, _core, np.arange(a.shape[1], dtype=np.int32)
        except Exception:  # noqa: BLE001  (no HiGHS object in this scipy: linprog below)
            self.highs = None

    def solve(self, c) -> tuple[float, np.ndarray | None]:
        """The least value of ``c @ x`` and a point attaining it (None: unbounded below)."""
        if self.highs is not None:
            self.highs.changeColsCost(len(c), self.columns, np.asarray(c, float))
            self.highs.run()
            status = self.highs.getModelStatus()
            states = self.core.HighsModelStatus
            if status == states.kOptimal:
                return self.highs.getInfo().objective_function_value, np.asarray(self.highs.getSolution().col_value)
            if status in (states.kUnbounded, states.kUnboundedOrInfeasible):
                return -np.inf, None
            raise ExplorerError(f"disclosure audit failed ({self.highs.modelStatusToString(status)}); "
                                "this is a bug, please report it")
        equal = np.isfinite(self.hi) & (self.lo == self.hi)
        upper, lower = ~equal & np.isfinite(self.hi), ~equal & (self.lo > 1e-9)
        a_ub = sparse.vstack([self.a[np.flatnonzero(upper)], -self.a[np.flatnonzero(lower)]]).tocsr()
        b_ub = np.concatenate([self.hi[upper], -self.lo[lower]])
        result = optimize.linprog(c, A_ub=a_ub if a_ub.shape[0] else None, b_ub=b_ub if a_ub.shape[0] else None,
                                  A_eq=self.a[np.flatnonzero(equal)] if equal.any() else None,
                                  b_eq=self.lo[equal] if equal.any() else None, bounds=(0, None), method="highs")
        if result.status == 3:
            return -np.inf, None
        if result.status != 0:
            raise ExplorerError(f"disclosure audit failed ({result.message}); this is a bug, please report it")
        return result.fun, result.x


class _Structure:
    """Which cells each entry sums and each link ties, and the reverse, as plain Python sets
    (complementary suppression looks these up many times)."""

    def __init__(self, pattern, links):
        self.cells = [frozenset(pattern.indices[pattern.indptr[k]:pattern.indptr[k + 1]]) for k in range(pattern.shape[0])]
        by_cell = pattern.tocsc()
        self.entries = [by_cell.indices[by_cell.indptr[c]:by_cell.indptr[c + 1]] for c in range(pattern.shape[1])]
        self.links, self.links_of = [], [[] for _ in range(pattern.shape[1])]
        if links is not None:
            links = links.tocsr()
            for r in range(links.shape[0]):
                cells = frozenset(links.indices[links.indptr[r]:links.indptr[r + 1]])
                self.links.append(cells)
                for c in cells:
                    self.links_of[c].append(r)


def _linked_complement(k, values, status, structure, overlap, locked=frozenset(), waited=None, given_away=None):
    """The entry to hide next so that entry ``k`` keeps its range, on a page with counts it does
    not show, facts from other pages or links between cells: of the shown counts that share an
    equation with ``k`` (a count containing it, or a link through one of its cells) without
    containing ``k`` itself, the one in the smallest equation, then the smallest; else the
    choice of :func:`_complement` (``structure``: a :class:`_Structure` of the page)."""
    cells_k = structure.cells[k]

    def free(j):
        return status[j] in ("shown", "rounded") and values[j] > 0 and not cells_k <= structure.cells[j] and j not in locked

    equations = [structure.cells[j] for j in overlap[k].indices if j != k and cells_k <= structure.cells[j]]
    for cell in cells_k:
        equations.extend(structure.links[r] | cells_k for r in structure.links_of[cell])
    ranked, hidden_near = {}, False
    for equation in equations:
        for cell in equation - cells_k:
            for j in structure.entries[cell]:
                if j in ranked and ranked[j] <= len(equation):
                    continue
                if free(j):
                    ranked[j] = len(equation)
                hidden_near = hidden_near or (status[j] in HIDDEN and j not in locked)
    if waited is not None and hidden_near and k not in waited:
        waited.add(k)  # a count beside it hidden this round may be enough: the next audit tells
        return None
    determined = getattr(locked, "determined", lambda j: False)
    ordered = [j for j in sorted(ranked, key=lambda j: (ranked[j], values[j], len(structure.cells[j]), j))
               if not determined(j)]
    # a count the rest of the page gives away (a cohort's persons with a value, when its size is
    # shown and nobody lacks one) reopens nothing hidden alone, and its own exposure would then
    # hide what gives it away (the size, and with it every feature): prefer one that is not
    for j in ordered:
        if given_away is None or not given_away(j, status):
            return j
    if ordered:  # each is given away alone: hide the first, as before (a later complement may free it)
        return ordered[0]
    choice = _complement(k, values, status, structure.pattern, overlap, locked)
    return None if choice is None or determined(choice) else choice


def _complement(k, values, status, matrix, overlap, locked=frozenset()) -> int:
    """The entry to hide next so that hidden count ``k`` stops being solvable: the smallest
    shown non-zero count in an equation with it, preferring a cell to a total of ``k``."""
    cells_k = set(matrix[k].indices)
    containing = [j for j in overlap[k].indices if cells_k <= set(matrix[j].indices) and j != k]
    partners = set()
    for j in containing + [k]:
        partners.update(overlap[j].indices)
    candidates = [j for j in partners if status[j] in ("shown", "rounded") and values[j] > 0 and j not in locked]
    if not candidates:  # reached through a longer chain of equations: any shown count may be it
        candidates = [j for j in range(len(values)) if status[j] in ("shown", "rounded") and values[j] > 0 and j not in locked]
    if not candidates:
        return None
    is_total = {j: cells_k <= set(matrix[j].indices) for j in candidates}
    return min(candidates, key=lambda j: (is_total[j], values[j], matrix[j].nnz, j))


def _text(value: float) -> str:
    return "" if value != value else f"{int(value):d}"
