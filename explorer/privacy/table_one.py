"""Table 1 a ``public`` reader may see: every count of the table (each group's size, each level of
each categorical variable, each variable's missing count) is released on one page through
:meth:`~explorer.privacy.disclosure.DisclosureControl.counts`, so small counts are hidden with their
complements across groups, levels and totals together; the statistics follow what is shown.

- n (%): the count as released; the percentage only where the count and its group's known count
  are both shown.
- mean (SD), median [IQR]: only for a group with more persons with a value than the hidden range
  (a complementary-hidden count is known to be above it, so the statistic adds nothing to that).
- standardised mean differences: a continuous variable's where both groups' statistics are shown;
  a categorical variable's only where every level count of both groups is shown (the difference
  of proportions would otherwise pin a hidden cell).

All variables share one page: a group size hidden in one variable's table and shown in another's
would give the hidden cells away.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.analysis.table_one import largest_pairwise, smd_from_moments, smd_from_proportions
from explorer.errors import ExplorerError
from explorer.privacy.disclosure import DisclosureControl

MISSING = "(missing)"


def released_table_one(frame: pd.DataFrame, by: str, continuous=(), categorical=(), nonnormal=(),
                       control: DisclosureControl | None = None) -> pd.DataFrame:
    """Table 1 of ``frame`` by ``by`` under disclosure control.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per person.
    by : str
        The grouping column.
    continuous, categorical, nonnormal : sequence of str
        As :func:`explorer.analysis.table_one.table_one`.
    control : DisclosureControl, optional
        The profile (default: the suite's default profile).

    Returns
    -------
    pandas.DataFrame
        ``variable``, ``level``, ``statistic``, one text column per group (no ``Overall``: it would
        be a second total beside the groups' sum), ``smd``; and ``<group>|n`` with the count shown
        (NaN when hidden), or the mean of a shown mean (SD), ``<group>|sd`` the SD beside it (for
        pooling across sites), and ``<group>|status``.
    """
    control = control or DisclosureControl()
    rules = control.rules
    missing = [c for c in (by, *continuous, *categorical, *nonnormal) if c not in frame]
    if missing:
        raise ExplorerError(f"Table 1: column(s) {missing} not in the frame; it has {list(frame.columns)}")
    numeric = [*continuous, *nonnormal]
    rows, groupings = table_one_page(frame, by, numeric, categorical)
    release = control.counts(rows, groupings)
    groups = sorted(rows[by].unique())
    sizes = release.table(by).set_index(by)
    out = [{"variable": "n", "level": "", "statistic": "n",
            **_cells({g: (sizes.at[g, "count"], sizes.at[g, "shown"], sizes.at[g, "status"], None) for g in groups})}]

    def cell_table(dim):
        table = release.table(by, dim)
        return {(r[by], r[dim]): (r["count"], r["shown"], r["status"]) for r in table.to_dict("records")}

    for variable in numeric:
        counts = cell_table(f"{variable} {MISSING}")
        known = {g: counts.get((g, "no"), (0.0, "0", "shown")) for g in groups}
        statistics = {}
        for g in groups:
            values = pd.to_numeric(frame.loc[rows[by] == g, variable], errors="coerce").dropna().to_numpy(dtype=float)
            # a statistic of more persons than the hidden range says only what a hidden complement already
            # does (its count is above the range); of fewer, nothing is shown
            shown = len(values) > max(rules.largest_hidden, 1)
            if not shown:
                statistics[g] = (np.nan, rules.label if len(values) else "", "hidden", None)
            elif variable in nonnormal:
                q = np.percentile(values, [50, 25, 75])
                statistics[g] = (q[0], f"{q[0]:.2f} [{q[1]:.2f}, {q[2]:.2f}]", "shown", None)
            else:
                statistics[g] = (values.mean(), f"{values.mean():.2f} ({values.std(ddof=1):.2f})", "shown", values.std(ddof=1))
        smd = largest_pairwise(groups, lambda a, b: _smd(statistics[a], statistics[b]) if variable not in nonnormal else np.nan)
        out.append({"variable": variable, "level": "", "statistic": "median [IQR]" if variable in nonnormal else "mean (SD)",
                    **_cells(statistics), "smd": smd})
        gone = {g: counts.get((g, "yes"), (0.0, "0", "shown")) + (None,) for g in groups}
        out.append({"variable": variable, "level": "", "statistic": "missing", **_cells(gone), "smd": np.nan})
    for variable in categorical:
        counts = cell_table(variable)
        levels = sorted({level for (_, level) in counts if level != MISSING})
        known = {g: sum(counts.get((g, level), (0.0,))[0] for level in levels) for g in groups}
        every_shown = all(np.isfinite(counts.get((g, level), (0.0,))[0]) for g in groups for level in levels)
        smd = largest_pairwise(groups, lambda a, b: _smd_levels(counts, a, b, levels)) if every_shown else np.nan
        for i, level in enumerate(levels):
            cells = {}
            for g in groups:
                count, shown, status = counts.get((g, level), (0.0, "0", "shown"))
                percent = 100 * count / known[g] if np.isfinite(count) and np.isfinite(known[g]) and known[g] > 0 else None
                cells[g] = (count, f"{shown} ({percent:.1f})" if percent is not None else shown, status, None)
            out.append({"variable": variable, "level": level, "statistic": "n (%)", **_cells(cells),
                        "smd": smd if i == 0 else np.nan})
        gone = {g: counts.get((g, MISSING), (0.0, "0", "shown")) + (None,) for g in groups}
        out.append({"variable": variable, "level": "", "statistic": "missing", **_cells(gone), "smd": np.nan})
    return pd.DataFrame(out)


def table_one_page(frame: pd.DataFrame, by: str, numeric, categorical) -> tuple[pd.DataFrame, list[tuple[str, ...]]]:
    """The person rows and groupings of every count Table 1 shows, as one page: the group sizes, and
    per group each categorical level (missing as a level) and each numeric variable's missing count."""
    rows = pd.DataFrame({by: frame[by].astype(str)})
    for variable in categorical:
        rows[variable] = frame[variable].astype(object).where(frame[variable].notna(), MISSING).astype(str)
    for variable in numeric:
        rows[f"{variable} {MISSING}"] = np.where(pd.to_numeric(frame[variable], errors="coerce").isna(), "yes", "no")
    return rows, [(by,)] + [(by, d) for d in rows.columns if d != by]


def _cells(cells: dict) -> dict:
    out = {}
    for group, (value, text, status, sd) in cells.items():
        out[group] = text
        out[f"{group}|n"] = value
        out[f"{group}|status"] = status
        out[f"{group}|sd"] = sd if sd is not None else np.nan
    return out


def _smd(a, b) -> float:
    (mean_a, _, status_a, sd_a), (mean_b, _, status_b, sd_b) = a, b
    if status_a != "shown" or status_b != "shown" or sd_a is None or sd_b is None:
        return np.nan
    return smd_from_moments(mean_a, sd_a, mean_b, sd_b)


def _smd_levels(counts: dict, a, b, levels) -> float:
    """Yang & Dalton's SMD from the shown level counts of groups ``a`` and ``b``."""
    na = np.array([counts.get((a, level), (0.0,))[0] for level in levels], dtype=float)
    nb = np.array([counts.get((b, level), (0.0,))[0] for level in levels], dtype=float)
    if na.sum() <= 0 or nb.sum() <= 0:
        return np.nan
    return smd_from_proportions(na / na.sum(), nb / nb.sum())
