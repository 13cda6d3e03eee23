"""Table 1: the characteristics of a study population by group, with standardised differences.

For a continuous variable, mean (SD) or, when it is skewed or asked for, median [IQR]; for a
categorical one, n (%) of each level among those with a value. Missing values are counted, never
folded into a level. The standardised mean difference between two groups is

.. math::

    d = \\frac{\\bar x_1 - \\bar x_2}{\\sqrt{(s_1^2 + s_2^2)/2}}

for a continuous variable and, for a categorical variable with level proportions
:math:`p_1, p_2` (the first level dropped),

.. math::

    d = \\sqrt{(p_1 - p_2)' S^{-1} (p_1 - p_2)},\\quad
    S_{kk} = \\frac{p_{1k}(1 - p_{1k}) + p_{2k}(1 - p_{2k})}{2},\\
    S_{kl} = -\\frac{p_{1k}p_{1l} + p_{2k}p_{2l}}{2}

which is :math:`|p_1 - p_2| / \\sqrt{(p_1(1-p_1) + p_2(1-p_2))/2}` for two levels. With more than two
groups the largest pairwise difference is shown (as R's ``tableone`` does).

References
----------
Austin PC. Balance diagnostics for comparing the distribution of baseline covariates between
treatment groups in propensity-score matched samples. Stat Med. 2009;28:3083-3107. Yang D, Dalton
JE. A unified approach to measuring the effect size between two groups using SAS. SAS Global Forum
2012, paper 335. Yoshida K, Bartel A. tableone: Create 'Table 1' to describe baseline
characteristics. R package.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError


def table_one(frame: pd.DataFrame, by: str | None = None, continuous=(), categorical=(), nonnormal=()) -> pd.DataFrame:
    """Table 1 of ``frame`` by the groups of ``by``.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per person.
    by : str, optional
        The grouping column (e.g. a cohort, a quartile of steps); an ``Overall`` column is always given.
    continuous, categorical : sequence of str
        Variables summarised by mean (SD) and by n (%).
    nonnormal : sequence of str
        Continuous variables shown as median [IQR] instead.

    Returns
    -------
    pandas.DataFrame
        One row per variable (and level): ``variable``, ``level``, ``statistic`` (``n``, ``mean (SD)``,
        ``median [IQR]``, ``n (%)`` or ``missing``) and, per group and ``Overall``, the text shown and the
        numbers it was made of (``<group>|n``, ``|value``, ``|spread``, ``|low``, ``|high``, ``|percent``);
        and ``smd``. The numbers are what a disclosure check sees: counts (``|n``) are person counts.
    """
    wanted = [*continuous, *categorical, *nonnormal, *([by] if by else [])]
    missing = [c for c in wanted if c not in frame]
    if missing:
        raise ExplorerError(f"Table 1: column(s) {missing} not in the frame; it has {list(frame.columns)}")
    both = set(continuous) & set(categorical)
    if both:
        raise ExplorerError(f"Table 1: {sorted(both)} given as both continuous and categorical; choose one")
    if by is not None and frame[by].isna().any():
        raise ExplorerError(f"Table 1: {int(frame[by].isna().sum())} row(s) have no {by!r}; give them a group or leave them out")
    groups = [("Overall", frame)]
    if by is not None:
        groups += [(str(level), part) for level, part in frame.groupby(by, sort=True, observed=True)]
    group_frames = dict(groups)
    rows: list[dict] = [{"variable": "n", "level": "", "statistic": "n",
                         **_cells({g: (len(part), None, None, None, None) for g, part in groups}, "count")}]
    compared = [g for g, _ in groups if g != "Overall"]
    for variable in [*continuous, *nonnormal]:
        median = variable in nonnormal
        cells = {}
        for name, part in groups:
            values = pd.to_numeric(part[variable], errors="coerce").dropna().to_numpy(dtype=float)
            if median:
                q = np.percentile(values, [50, 25, 75]) if len(values) else [np.nan] * 3
                cells[name] = (len(values), q[0], None, q[1], q[2])
            else:
                cells[name] = (len(values), values.mean() if len(values) else np.nan,
                               values.std(ddof=1) if len(values) > 1 else np.nan, None, None)
        smd = largest_pairwise(compared, lambda a, b: _smd_continuous(group_frames[a][variable], group_frames[b][variable]))
        rows.append({"variable": variable, "level": "", "statistic": "median [IQR]" if median else "mean (SD)",
                     **_cells(cells, "median" if median else "mean"), "smd": smd})
        rows.append(_missing_row(variable, groups))
    for variable in categorical:
        levels = sorted(frame[variable].dropna().unique(), key=str)
        smd = largest_pairwise(compared, lambda a, b: _smd_categorical(group_frames[a][variable], group_frames[b][variable], levels))
        for i, level in enumerate(levels):
            cells = {}
            for name, part in groups:
                known = part[variable].notna().sum()
                count = int((part[variable] == level).sum())
                cells[name] = (count, 100.0 * count / known if known else np.nan, None, None, None)
            rows.append({"variable": variable, "level": str(level), "statistic": "n (%)", **_cells(cells, "percent"),
                         "smd": smd if i == 0 else np.nan})
        rows.append(_missing_row(variable, groups))
    out = pd.DataFrame(rows)
    if "smd" not in out:
        out["smd"] = np.nan
    return out


def _cells(cells: dict, kind: str) -> dict:
    out = {}
    for name, (n, value, spread, low, high) in cells.items():
        if kind == "count":
            text = f"{n:,}"
        elif kind == "percent":
            text = f"{n:,} ({value:.1f})" if np.isfinite(value) else f"{n:,}"
        elif kind == "mean":
            text = f"{value:.2f} ({spread:.2f})" if n > 1 else (f"{value:.2f}" if n else "")
        else:
            text = f"{value:.2f} [{low:.2f}, {high:.2f}]" if n else ""
        out[name] = text
        out[f"{name}|n"] = n
        out[f"{name}|value"] = value if kind != "count" else float(n)
        out[f"{name}|spread"] = spread
        out[f"{name}|low"] = low
        out[f"{name}|high"] = high
    return out


def _missing_row(variable: str, groups) -> dict:
    cells = {name: (int(part[variable].isna().sum()), None, None, None, None) for name, part in groups}
    return {"variable": variable, "level": "", "statistic": "missing", **_cells(cells, "count"), "smd": np.nan}


def largest_pairwise(groups, difference) -> float:
    """The largest finite ``difference(a, b)`` over pairs of ``groups`` (NaN when there is none)."""
    values = [difference(a, b) for a, b in itertools.combinations(groups, 2)]
    values = [v for v in values if v is not None and np.isfinite(v)]
    return max(values) if values else np.nan


def smd_from_moments(mean_a: float, sd_a: float, mean_b: float, sd_b: float) -> float:
    """:math:`|\\bar x_1 - \\bar x_2| / \\sqrt{(s_1^2 + s_2^2)/2}` (NaN without spread)."""
    pooled = np.sqrt((sd_a ** 2 + sd_b ** 2) / 2)
    if not np.isfinite(pooled):
        return np.nan
    return float(abs(mean_a - mean_b) / pooled) if pooled > 0 else (0.0 if mean_a == mean_b else np.inf)


def smd_from_proportions(p1, p2) -> float:
    """Yang & Dalton's SMD of two level distributions (proportions of every level, the first dropped)."""
    p1, p2 = np.asarray(p1, dtype=float)[1:], np.asarray(p2, dtype=float)[1:]
    if len(p1) == 0:
        return np.nan
    S = -(np.outer(p1, p1) + np.outer(p2, p2)) / 2
    np.fill_diagonal(S, (p1 * (1 - p1) + p2 * (1 - p2)) / 2)
    diff = p1 - p2
    if not diff.any():
        return 0.0
    return float(np.sqrt(diff @ np.linalg.pinv(S) @ diff))


def _smd_continuous(a: pd.Series, b: pd.Series) -> float:
    a = pd.to_numeric(a, errors="coerce").dropna().to_numpy(dtype=float)
    b = pd.to_numeric(b, errors="coerce").dropna().to_numpy(dtype=float)
    if len(a) < 2 or len(b) < 2:
        return np.nan
    return smd_from_moments(a.mean(), a.std(ddof=1), b.mean(), b.std(ddof=1))


def _smd_categorical(a: pd.Series, b: pd.Series, levels: list) -> float:
    a, b = a.dropna(), b.dropna()
    if len(a) == 0 or len(b) == 0:
        return np.nan
    return smd_from_proportions([(a == level).mean() for level in levels], [(b == level).mean() for level in levels])
