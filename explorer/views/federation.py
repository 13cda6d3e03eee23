"""The page of a federated study (:mod:`explorer.federation`): which sites took part and how each
answered, then per analysis the pooled result beside each site's, with heterogeneity.

Everything on it left its site through the site's disclosure profile (and pooled tables are sums
of what was released), so any role may see it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import param

from explorer.errors import ExplorerError
from explorer.views.base import LakeView, holoviews_with_bokeh, static_table

WIDTH = 640
STATUS_COLOURS = {"contributed": "#27ae60", "refused": "#c0392b", "unreachable": "#c0392b", "pending review": "#e67e22",
                  "rejected": "#c0392b"}


def site_status(result: dict) -> pd.DataFrame:
    """One row per site: how it answered each analysis."""
    rows = []
    for site in result["sites"]:
        row = {"site": site["name"]}
        for analysis in result["analyses"]:
            answer = analysis["sites"].get(site["name"], {"status": "not asked"})
            row[analysis["name"]] = answer["status"] + (f": {answer['message']}" if answer.get("message") else "")
        rows.append(row)
    return pd.DataFrame(rows)


def _p_text(p) -> str:
    return "" if p is None or pd.isna(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def meta_forest(analysis: dict, coefficient: str, key: str = "meta"):
    """Each site's estimate of ``coefficient`` with its 95% CI, and the pooled one (a diamond).
    ``key`` names the plot's dimensions: Panel links the axes of plots on one page that share a
    dimension name, and each coefficient needs its own range."""
    hv = holoviews_with_bokeh()
    x, y = f"{key}_estimate", f"{key}_row"
    pooled = analysis["pooled"]
    sites = pd.DataFrame(pooled["sites"])
    sites = sites[sites["coefficient"] == coefficient].reset_index(drop=True)
    table = pd.DataFrame(pooled["table"]).set_index("coefficient").loc[coefficient]
    rows = [(r.site, r.estimate, r.estimate - 1.96 * r.se, r.estimate + 1.96 * r.se) for r in sites.itertuples()]
    rows.append(("pooled", table["estimate"], table["lower"], table["upper"]))
    frame = pd.DataFrame(rows, columns=["label", x, "low", "high"])
    frame[y] = np.arange(len(frame))[::-1]
    segments = hv.Path([[(low, row), (high, row)] for low, high, row in zip(frame["low"], frame["high"], frame[y])],
                       kdims=[x, y]).opts(color="#333333", line_width=2)
    points = hv.Scatter(frame.iloc[:-1], x, [y, "label", "low", "high"]).opts(size=9, color="#2c7fb8", tools=["hover"])
    diamond = hv.Scatter(frame.iloc[-1:], x, [y, "label", "low", "high"]).opts(
        size=16, marker="diamond", color="#c0392b", tools=["hover"])
    zero = hv.VLine(0.0).opts(color="#555555", line_dash="dashed", line_width=1)
    title = (f"{coefficient}: pooled {table['estimate']:.3g} [{table['lower']:.3g}, {table['upper']:.3g}], "
             f"I² {100 * table['i2']:.0f}%, τ² {table['tau2']:.3g}")
    return (segments * points * diamond * zero).opts(
        width=WIDTH, height=max(170, 70 + 40 * len(frame)), ylim=(-0.7, len(frame) - 0.3),
        yticks=list(zip(frame[y], frame["label"])), xlabel=f"{coefficient} (95% CI)", ylabel="", title=title,
        show_grid=True)


def study_page(result: dict | str):
    """The study page: sites and their status, then each analysis pooled and per site.

    Parameters
    ----------
    result : dict or str
        :func:`explorer.federation.run_study`'s result (or its JSON).
    """
    import panel as pn

    if isinstance(result, str):
        result = json.loads(result)
    if result.get("schema") != "explorer.federation-result/1":
        raise ExplorerError("the study page reads a federated study's result (schema explorer.federation-result/1)")
    contributed = len(result["contributors"])
    headline = (f"## Study {result['study']}\n"
                f"Cohort **{result['cohort']['name']}**, run {result['run_at']}: **{contributed} of {len(result['sites'])}** "
                f"sites contributed." + ("" if result["complete"] else
                                         " **Partial result**: the analyses below say which sites are in each.")
                + (f"\n\n{result['description']}" if result.get("description") else ""))
    parts = [pn.pane.Markdown(headline, width=900), pn.pane.Markdown("### Sites"), static_table(site_status(result))]
    for k, analysis in enumerate(result["analyses"]):
        parts += _analysis(analysis, f"study{k}")
    return pn.Column(*parts, width=960)


def _analysis(analysis: dict, key: str) -> list:
    import panel as pn

    contributors = analysis["contributors"]
    status = "complete" if analysis["complete"] else f"partial: {', '.join(contributors) or 'no site'} contributed"
    parts = [pn.pane.Markdown(f"### {analysis['name']}\n*{status}*" + (f" - {analysis['note']}" if analysis.get("note") else ""),
                              width=900)]
    pooled = analysis["pooled"]
    if pooled is None:
        return parts + [pn.pane.Markdown("No site released a result.")]
    kind = analysis["type"]
    if kind == "attrition":
        frame = pd.DataFrame(pooled)
        frame = frame[[c for c in frame.columns if c != "pooled"]].rename(columns={"pooled_shown": "pooled"})
        parts.append(static_table(frame))
    elif kind == "table_one":
        frame = pd.DataFrame(pooled)
        frame = frame[[c for c in frame.columns if "|" not in c]]
        frame["smd"] = frame["smd"].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.3f}")
        parts += [pn.pane.Markdown("Pooled (counts summed where every site showed them; medians stay per site):"),
                  static_table(frame)]
    elif kind == "glm":
        table = pd.DataFrame(pooled["table"])
        columns = ["term", "estimate", "se", "lower", "upper", "p"] + [c for c in table if c.startswith("odds_ratio")]
        parts += [pn.pane.Markdown(f"{pooled['n']:,} persons, fitted exactly from the sites' summed score and information "
                                   f"({pooled['iterations']} Newton steps)."),
                  static_table(table[columns].round(4).assign(p=table["p"].map(_p_text)))]
    else:
        table = pd.DataFrame(pooled["table"])
        shown = table.round(4)
        shown["p"] = table["p"].map(_p_text)
        shown["i2"] = (100 * table["i2"]).map(lambda v: f"{v:.0f}%")
        shown = shown.rename(columns={"i2": "I²", "tau2": "τ²"})
        parts += [pn.pane.Markdown(f"{pooled['method']} of {len(contributors)} site estimates ({pooled['n_persons']:,} persons); "
                                   f"Q = {pooled['q']:.2f} on {pooled['q_df']} df (p = {pooled['q_p']:.3g})"
                                   if pooled["q_df"] else f"{pooled['method']}"),
                  static_table(shown)]
        for j, coefficient in enumerate(table["coefficient"]):
            parts.append(pn.pane.HoloViews(meta_forest(analysis, coefficient, key=f"{key}_{j}")))
    return parts


class FederatedStudies(LakeView):
    """The federated studies saved in the lake (``explorer federate run --save``): choose a run and
    see its :func:`study_page`. Every number in a run was released by its sites under disclosure
    control, so every role may see them."""

    run = param.Selector(default=None, objects=[], check_on_set=False, allow_None=True,
                         doc="The study run shown (its label: study, time, sites); default the newest.")

    def __init__(self, **params):
        run = params.pop("run", None)
        super().__init__(**params)
        labels = list(self.runs()["label"]) if self.lake is not None else []
        self.param["run"].objects = labels
        self.run = run if run in labels else (labels[0] if labels else None)

    def runs(self) -> pd.DataFrame:
        """study, run_at, sites_asked, sites_contributed, complete, result and a label, newest first."""
        if not self.lake.has_table("federated_study"):
            return pd.DataFrame(columns=["study", "run_at", "sites_asked", "sites_contributed", "complete", "result", "label"])
        frame = self._sql("SELECT study, run_at, sites_asked, sites_contributed, complete, result FROM federated_study "
                          "ORDER BY run_at DESC")
        frame["label"] = [f"{r.study} ({r.run_at:%Y-%m-%d %H:%M}, {r.sites_contributed}/{r.sites_asked} sites)"
                          for r in frame.itertuples()]
        return frame

    def panel(self):
        import panel as pn

        runs = self.runs()
        if runs.empty:
            return pn.pane.Markdown("### No federated studies yet\nRun one with `explorer --lake LAKE federate run "
                                    "study.yaml --save`; its sites, pooled results and heterogeneity appear here.")
        chosen = runs[runs["label"] == self.run]
        return study_page((chosen if len(chosen) else runs).iloc[0]["result"])
