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

Means, percentiles and histogram bins of a group whose count is hidden are hidden with it;
percentages are computed from shown counts only, so they reveal nothing the counts do not.

References
----------
All of Us Research Program, Data and Statistics Dissemination Policy (counts 1-20).
CMS, Cell Size Suppression Policy (cells 1-10). OpenSAFELY, Output checking: redact <= 7, round to
the nearest 5. UK Biobank, Data Access Guide (minimum cell size 5). Hundepool et al. (2012),
Statistical Disclosure Control, Wiley, ch. 4 (cell suppression, audit by linear programming).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import param
from scipy import optimize, sparse

from explorer.errors import ExplorerError, did_you_mean

COMPLEMENTARY_LABEL = "suppressed"


@dataclass(frozen=True)
class Profile:
    """A disclosure-control policy: which counts are hidden and how shown ones are rounded."""

    name: str
    title: str
    smallest_hidden: int  # counts from here ...
    largest_hidden: int  # ... to here are hidden (primary suppression or redaction)
    label: str  # what a hidden small count shows
    rounding: int = 1  # shown counts are rounded to a multiple of this
    reference: str = ""

    def hides(self, count: float) -> bool:
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


def profile(name: str | Profile) -> Profile:
    """The profile called ``name`` (one of :data:`PROFILES`)."""
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
    rounded counts of a finer table on the page)."""

    profile: Profile
    tables: list[pd.DataFrame]
    groupings: list[tuple[str, ...]] = field(default_factory=list)

    def table(self, *grouping: str) -> pd.DataFrame:
        """The frame of ``grouping`` (no argument: the total)."""
        try:
            return self.tables[self.groupings.index(tuple(grouping))]
        except ValueError:
            raise ExplorerError(f"this release has no table grouped by {grouping!r}; it has "
                                f"{', '.join(map(str, self.groupings))}") from None

    @property
    def hidden(self) -> int:
        """How many published counts are hidden."""
        return int(sum(t["status"].isin(["primary", "complementary"]).sum() for t in self.tables))


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
        if "profile" in params and params["profile"] not in PROFILES:
            profile(params["profile"])  # the clear message, not param's
        super().__init__(**params)

    @property
    def rules(self) -> Profile:
        return PROFILES[self.profile]

    # ------------------------------------------------------------------ counts
    def counts(self, rows: pd.DataFrame, groupings, *, weight: str | None = None) -> Release:
        """Protected counts of ``rows`` for each grouping in ``groupings`` (tuples of column
        names; ``()`` is the total), all shown on one page.

        ``rows`` is one row per unit counted (persons, say), or finest counts with their number in
        the ``weight`` column (what a SQL ``GROUP BY`` returns)."""
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
        entries, tables = [], []
        for grouping in groupings:
            frame, members = _marginal(finest, dims, levels, grouping)
            entries.extend(members)
            tables.append(frame)
        values = np.concatenate([t["_true"].to_numpy(float) for t in tables]) if tables else np.zeros(0)
        status = self._protect(values, entries, finest.size)
        tables = self._present(tables, status)
        if self.rules.rounding > 1:
            _recompute_totals(tables, groupings, self.rules)
        return Release(self.rules, tables, groupings)

    def crosstab(self, rows: pd.DataFrame, index: str, columns: str, *, weight: str | None = None) -> pd.DataFrame:
        """A protected two-way table of counts with its margins ("Total"), as the text shown.

        Margins are part of the page (so a hidden cell cannot be solved from them); under a
        rounding profile they are the sums of the rounded cells shown, as OpenSAFELY asks."""
        page = self.counts(rows, [(index, columns), (index,), (columns,), ()], weight=weight)
        out = page.table(index, columns).pivot(index=index, columns=columns, values="shown")
        out["Total"] = page.table(index).set_index(index)["shown"]
        total_row = page.table(columns).set_index(columns)["shown"]
        total_row["Total"] = page.table()["shown"].iloc[0]
        out.loc["Total"] = total_row
        return out

    def percentages(self, table: pd.DataFrame, of: tuple[str, ...] | list[str] = ()) -> pd.Series:
        """Percent of each count in ``table`` (a frame of a :class:`Release`) within its group
        ``of`` (default: the whole table), from the counts shown only: a hidden count has no
        percentage, and a group with a hidden count gives none for any of its members."""
        of = list(of)
        shown = table["count"]
        if of:
            total = shown.groupby([table[c] for c in of]).transform(lambda s: s.sum() if s.notna().all() else np.nan)
        else:
            total = pd.Series(shown.sum() if shown.notna().all() else np.nan, index=table.index)
        return (100.0 * shown / total.where(total > 0)).rename("percent")

    def attrition(self, remaining) -> pd.DataFrame:
        """A protected attrition table: ``remaining[k]`` persons left after step ``k``
        (non-increasing; ``remaining[0]`` is everyone).

        The page shows each remaining count and each step's removed count (``remaining[k-1] -
        remaining[k]``, itself a count of persons with a characteristic), so both are published
        counts over the same finest cells, the persons removed at each step and those kept. A
        small number removed is hidden, and so is a remaining count next to it when the two
        neighbours would give it away.

        Returns one row per step: ``persons``, ``persons_shown``, ``persons_status``, ``removed``,
        ``removed_shown``, ``removed_status`` (step 0 removes nothing: its removed is NaN).
        """
        remaining = np.asarray(remaining, dtype=float)
        if remaining.ndim != 1 or not len(remaining) or np.any(np.diff(remaining) > 0) or np.any(remaining < 0):
            raise ExplorerError(f"attrition counts must be non-negative and never grow from step to step, got {remaining.tolist()}")
        n = len(remaining)
        entries = [np.arange(k, n) for k in range(n)] + [np.array([k - 1]) for k in range(1, n)]
        values = np.concatenate([remaining, remaining[:-1] - remaining[1:]])

        def neighbour(k, values, status, matrix, overlap):
            # the counts in the two equations of a step (before = removed + after): hiding the
            # smaller shown neighbour keeps the rest of the chain readable; the total comes last
            def remaining_at(step):
                return step if 0 <= step < n else None

            def removed_at(step):  # the entry of the count removed by step ``step`` (1..n-1)
                return n + step - 1 if 1 <= step < n else None

            if k < n:
                near = [removed_at(k), remaining_at(k - 1), removed_at(k + 1), remaining_at(k + 1)]
            else:
                near = [remaining_at(k - n), remaining_at(k - n + 1)]
            near = [j for j in near if j is not None]
            candidates = [j for j in near if status[j] in ("shown", "rounded") and values[j] > 0]
            if any(j != 0 for j in candidates):
                return min((j for j in candidates if j != 0), key=lambda j: (values[j], j))
            if k not in waited and any(status[j] in ("primary", "complementary") for j in near):
                waited.add(k)  # a neighbour hidden this round may be enough: the next audit tells
                return None
            return 0 if candidates else _complement(k, values, status, matrix, overlap)

        waited: set[int] = set()

        status = self._protect(values, entries, n, complement=neighbour)
        rules = self.rules
        shown = np.array([rules.round(v) if s in ("shown", "rounded") else np.nan for v, s in zip(values, status)])
        text = [_text(v) if s in ("shown", "rounded") else rules.label if s == "primary" else COMPLEMENTARY_LABEL
                for v, s in zip(shown, status)]
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
        Rows without a value are not counted (they tell nothing of it)."""
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
        cannot be recovered from the total."""
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

    def _protect(self, values: np.ndarray, entries: list[np.ndarray], n_cells: int, complement=None) -> np.ndarray:
        rules = self.rules
        complement = complement or _complement
        status = np.where([rules.hides(v) for v in values], "primary", "rounded" if rules.rounding > 1 else "shown").astype(object)
        if not len(values) or not n_cells:  # nothing counted: no cell to solve for
            return status
        matrix = sparse.csr_matrix((np.ones(sum(len(e) for e in entries)),
                                    (np.repeat(np.arange(len(entries)), [len(e) for e in entries]),
                                     np.concatenate(entries))), shape=(len(entries), n_cells))
        overlap = (matrix @ matrix.T).tocsr()  # entries sharing a cell: they appear in one equation
        # Hiding more only relaxes what a reader knows, so a count found safe stays safe: each
        # round audits only the counts exposed last round and the ones newly hidden.
        candidates = None
        stalled = False
        while True:
            exposed = _exposed(values, status, matrix, rules, candidates)
            if not exposed:
                return status
            before = set(np.flatnonzero(np.isin(status, ["primary", "complementary"])))
            touched = set()
            for k in exposed:  # one complement per equation each round; the next audit rechecks the rest
                if k in touched:
                    continue
                added = complement(k, values, status, matrix, overlap)
                if added is None:
                    continue
                status[added] = "complementary"
                touched.update(overlap[added].indices)
            if set(np.flatnonzero(np.isin(status, ["primary", "complementary"]))) == before:
                if not stalled:  # a complement chooser may have waited for this audit: ask it once more
                    stalled = True
                    candidates = sorted(exposed)
                    continue
                # nothing left to hide beside them: what remains is what the labels themselves say
                # ("<5" three times under a total of "<5"), and no release could say less
                return status
            stalled = False
            candidates = sorted(set(exposed) | (set(np.flatnonzero(np.isin(status, ["primary", "complementary"]))) - before))

    def _present(self, tables, status) -> list[pd.DataFrame]:
        rules, out, start = self.rules, [], 0
        for frame in tables:
            own = status[start:start + len(frame)]
            start += len(frame)
            true = frame.pop("_true").to_numpy(float)
            shown = np.array([rules.round(v) if s in ("shown", "rounded") else np.nan for v, s in zip(true, own)])
            frame["count"] = shown
            frame["shown"] = [_text(v) if s in ("shown", "rounded") else rules.label if s == "primary" else COMPLEMENTARY_LABEL
                              for v, s in zip(shown, own)]
            frame["status"] = own
            out.append(frame)
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


def _exposed(values, status, matrix, rules, candidates=None) -> list[int]:
    """Hidden counts a reader of the page can pin down, or narrow too far: for each, a linear
    programme gives the least and greatest value it can take given everything shown. A count
    hidden because it is small must keep a range at least half the hidden range wide (All of
    Us: 10 of 1-20), so "<=20" never reads as "2 or 3"; one hidden to protect another must
    keep at least two whole values."""
    hidden = np.flatnonzero(np.isin(status, ["primary", "complementary"])) if candidates is None else candidates
    if not len(hidden):
        return []
    lower = np.zeros(len(values))
    upper = np.full(len(values), np.inf)
    for j, (v, s) in enumerate(zip(values, status)):
        if s == "shown":
            lower[j] = upper[j] = v
        elif s == "rounded":
            value, half = rules.round(v), (rules.rounding - 1) // 2
            lower[j], upper[j] = max(value - half, 0), value + half
        elif s == "primary":
            lower[j], upper[j] = rules.smallest_hidden, rules.largest_hidden
        else:  # complementary: a count that would have been shown, so above the hidden range
            lower[j] = rules.largest_hidden + 1
    finite = np.isfinite(upper)
    a_ub = sparse.vstack([matrix[finite], -matrix]).tocsr()
    b_ub = np.concatenate([upper[finite], -lower])
    wide = max(1, math.ceil((rules.largest_hidden - rules.smallest_hidden) / 2))
    out = []
    for k in hidden:
        objective = np.asarray(matrix[k].todense()).ravel()
        low = optimize.linprog(objective, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
        if low.status != 0:
            raise ExplorerError(f"disclosure audit failed ({low.message}); this is a bug, please report it")
        high = optimize.linprog(-objective, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
        greatest = -high.fun if high.status == 0 else np.inf
        span = math.floor(greatest + 1e-7) - math.ceil(low.fun - 1e-7) if np.isfinite(greatest) else np.inf
        if span < (wide if status[k] == "primary" else 1):
            out.append(int(k))
    return out


def _complement(k, values, status, matrix, overlap) -> int:
    """The entry to hide next so that hidden count ``k`` stops being solvable: the smallest
    shown non-zero count in an equation with it, preferring a cell to a total of ``k``."""
    cells_k = set(matrix[k].indices)
    containing = [j for j in overlap[k].indices if cells_k <= set(matrix[j].indices) and j != k]
    partners = set()
    for j in containing + [k]:
        partners.update(overlap[j].indices)
    candidates = [j for j in partners if status[j] in ("shown", "rounded") and values[j] > 0]
    if not candidates:  # reached through a longer chain of equations: any shown count may be it
        candidates = [j for j in range(len(values)) if status[j] in ("shown", "rounded") and values[j] > 0]
    if not candidates:
        return None
    is_total = {j: cells_k <= set(matrix[j].indices) for j in candidates}
    return min(candidates, key=lambda j: (is_total[j], values[j], matrix[j].nnz, j))


def _text(value: float) -> str:
    return "" if value != value else f"{int(value):d}"
