"""Pooling what the sites released: attrition and Table 1 summed from the released counts, GLMs
by Newton's method on summed score and information, and per-site estimates by random-effects
meta-analysis.

A pooled count is the sum of the sites' released counts, shown only when every site showed its
own (a count hidden at one site leaves the pooled one hidden too, marked with where). Each site
protects its tables under the stricter of its own and the study's profile before release; the
pooled tables are functions of those releases alone, so a reader of every per-site and pooled
table together can solve for nothing the per-site releases do not already pin (the property
test runs the disclosure tests' linear-programming attacker on them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.analysis.table_one import largest_pairwise, smd_from_moments, smd_from_proportions
from explorer.errors import ExplorerError

HIDDEN_STATUSES = ("primary", "complementary")


def _count(record: dict, column: str, status_column: str):
    """A released count, or None when the site hid it."""
    if record.get(status_column) in HIDDEN_STATUSES or record.get(column) is None:
        return None
    value = float(record[column])
    return value if np.isfinite(value) else None


def _sum(values: dict, approximate: bool = False) -> tuple[float | None, str]:
    hidden = [site for site, v in values.items() if v is None]
    if hidden:
        return None, f"hidden at {', '.join(hidden)}"
    total = float(sum(values.values()))
    return total, f"{'≈' if approximate else ''}{total:,.0f}"


def pool_attrition(per_site: dict[str, list[dict]]) -> pd.DataFrame:
    """Attrition of the same cohort at every site: per step the persons remaining at each site (as
    released) and pooled.

    Returns
    -------
    pandas.DataFrame
        step, label, one column per site (the text it released), ``pooled`` (the sum, NaN when a
        site hid its count) and ``pooled_shown`` ("≈" when a site added differential-privacy noise).
    """
    if not per_site:
        return pd.DataFrame(columns=["step", "label", "pooled", "pooled_shown"])
    lengths = {site: len(rows) for site, rows in per_site.items()}
    if len(set(lengths.values())) != 1:
        raise ExplorerError(f"attrition: the sites returned different numbers of steps {lengths}; "
                            "they did not run the same cohort definition")
    first = next(iter(per_site.values()))
    out = []
    for k, reference in enumerate(first):
        row = {"step": reference["step"], "label": reference["label"]}
        values = {}
        for site, rows in per_site.items():
            record = rows[k]
            row[site] = record.get("persons_shown", record.get("persons"))
            values[site] = _count(record, "persons", "persons_status")
        noisy = any(rows[k].get("persons_status") == "dp" for rows in per_site.values())
        row["pooled"], row["pooled_shown"] = _sum(values, approximate=noisy)  # a sum of noisy counts is noisy
        out.append(row)
    frame = pd.DataFrame(out)
    frame["pooled"] = pd.to_numeric(frame["pooled"], errors="coerce")
    return frame


def pool_table_one(per_site: dict[str, dict]) -> pd.DataFrame:
    """Table 1 pooled across sites from their released tables.

    Counts (group sizes, levels, missing) are summed where every site showed them; a percentage
    is the pooled count over the pooled count of the variable's levels; a mean (SD) is pooled from
    each site's mean, SD and number of persons with a value (its group size less its missing
    count, both as released):
    :math:`\\bar x = \\sum n_i \\bar x_i / N`,
    :math:`s^2 = [\\sum (n_i - 1)s_i^2 + \\sum n_i(\\bar x_i - \\bar x)^2]/(N - 1)`.
    Medians cannot be pooled from summaries and are left to the per-site tables.

    Returns
    -------
    pandas.DataFrame
        variable, level, statistic, one text column per group, ``smd``, and ``<group>|n`` (pooled
        count or mean, NaN when not poolable).
    """
    if not per_site:
        raise ExplorerError("Table 1: no site released one")
    groups = sorted({g for result in per_site.values() for g in result["groups"]})
    tables = {site: result["table"] for site, result in per_site.items()}
    keys = []
    for rows in tables.values():
        for r in rows:
            key = (r["variable"], r["level"] or "", r["statistic"])
            if key not in keys:
                keys.append(key)
    index = {site: {(r["variable"], r["level"] or "", r["statistic"]): r for r in rows} for site, rows in tables.items()}

    def counts(variable, level, statistic, group):
        values = {}
        for site in tables:
            record = index[site].get((variable, level, statistic))
            if record is None or group not in per_site[site]["groups"]:
                values[site] = 0.0  # the level or group does not occur at this site: none there
            else:
                values[site] = _count(record, f"{group}|n", f"{group}|status")
        return values

    pooled_counts: dict = {}
    for variable, level, statistic in keys:
        if statistic in ("n", "n (%)", "missing"):
            for group in groups:
                pooled_counts[(variable, level, statistic, group)] = _sum(counts(variable, level, statistic, group))
    out = []
    for variable, level, statistic in keys:
        row = {"variable": variable, "level": level, "statistic": statistic}
        moments = {}
        for group in groups:
            if statistic in ("n", "missing"):
                value, text = pooled_counts[(variable, level, statistic, group)]
            elif statistic == "n (%)":
                value, text = pooled_counts[(variable, level, statistic, group)]
                levels = [pooled_counts[k][0] for k in pooled_counts
                          if k[0] == variable and k[2] == "n (%)" and k[3] == group]
                if value is not None and all(v is not None for v in levels) and sum(levels) > 0:
                    text = f"{text} ({100 * value / sum(levels):.1f})"
            elif statistic == "mean (SD)":
                value, text, sd = _pooled_mean(per_site, index, variable, group)
                moments[group] = (value, sd)
            else:
                value, text = np.nan, "per site only"
            row[group] = text
            row[f"{group}|n"] = np.nan if value is None else value
        if statistic == "mean (SD)":
            row["smd"] = largest_pairwise(groups, lambda a, b: smd_from_moments(*moments[a], *moments[b])
                                          if None not in (*moments[a], *moments[b]) and np.isfinite(moments[a][0])
                                          and np.isfinite(moments[b][0]) else np.nan)
        elif statistic == "n (%)" and not any(r.get("statistic") == "n (%)" and r["variable"] == variable for r in out):
            row["smd"] = _categorical_smd(pooled_counts, variable, groups)
        else:
            row["smd"] = np.nan
        out.append(row)
    return pd.DataFrame(out)


def _pooled_mean(per_site, index, variable, group):
    parts = []
    for site in index:
        if group not in per_site[site]["groups"]:
            continue
        stat = index[site].get((variable, "", "mean (SD)"))
        size = index[site].get(("n", "", "n"))
        missing = index[site].get((variable, "", "missing"))
        n_group = _count(size, f"{group}|n", f"{group}|status") if size else None
        n_missing = _count(missing, f"{group}|n", f"{group}|status") if missing else None
        mean = stat.get(f"{group}|n") if stat else None
        sd = stat.get(f"{group}|sd") if stat else None
        if n_group is None or n_missing is None:
            return None, f"not poolable: a count is hidden at {site}", None
        n = n_group - n_missing
        if n <= 0:
            continue
        if mean is None or sd is None or stat.get(f"{group}|status") != "shown":
            return None, f"hidden at {site}", None
        parts.append((n, float(mean), float(sd)))
    if not parts:
        return None, "", None
    n = np.array([p[0] for p in parts])
    means = np.array([p[1] for p in parts])
    sds = np.array([p[2] for p in parts])
    total = n.sum()
    mean = float((n * means).sum() / total)
    sd = float(np.sqrt((((n - 1) * sds ** 2).sum() + (n * (means - mean) ** 2).sum()) / (total - 1))) if total > 1 else np.nan
    return mean, f"{mean:.2f} ({sd:.2f})", sd


def _categorical_smd(pooled_counts, variable, groups) -> float:
    levels = sorted({k[1] for k in pooled_counts if k[0] == variable and k[2] == "n (%)"})
    shares = {}
    for group in groups:
        values = [pooled_counts[(variable, level, "n (%)", group)][0] for level in levels]
        if any(v is None for v in values) or sum(values) <= 0:
            return np.nan
        shares[group] = np.array(values, dtype=float) / sum(values)
    return largest_pairwise(groups, lambda a, b: smd_from_proportions(shares[a], shares[b]))
