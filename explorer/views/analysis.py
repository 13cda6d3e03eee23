"""Views of the epidemiological analyses (:mod:`explorer.analysis`): the overall exposure-response
curve, the lag-response at chosen exposures and the exposure-lag surface of a distributed-lag model,
survival curves with their risk table, a forest plot of hazard or odds ratios, and Table 1.

They draw results a researcher computed from person-level rows, so they are for the ``researcher``
role, except the survival curves and Table 1, which a ``public`` reader sees as their releases
(:mod:`explorer.privacy.survival`, :mod:`explorer.privacy.table_one`); the others refuse ``public``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError
from explorer.privacy import require
from explorer.views.base import holoviews_with_bokeh, static_table

WIDTH, HEIGHT = 620, 320
COLOURS = ["#2c7fb8", "#c0392b", "#27ae60", "#8e44ad", "#e67e22"]
REFERENCE_LINE = {"color": "#555555", "line_dash": "dashed", "line_width": 1}

# Panel links the axes of plots on one page that share a dimension name: each view names its
# dimensions after its own quantity, so a lag axis never takes an exposure's range, nor a forest
# plot's ratios a dose-response's steps.


def _researcher(role: str, what: str) -> None:
    require(role, "person_rows", what)


def exposure_response(prediction, *, exposure: str = "exposure", outcome: str = "", role: str = "researcher"):
    """The overall cumulative exposure-response of a DLNM with its 95% band, against the reference.

    Parameters
    ----------
    prediction : explorer.analysis.dlnm.CrossPrediction
    exposure, outcome : str
        Axis labels (with units).
    """
    _researcher(role, "the exposure-response view")
    hv = holoviews_with_bokeh()
    frame = prediction.overall_frame()
    ratio = prediction.link == "log"
    label = outcome or ("relative risk" if ratio else "difference")
    band = hv.Area(frame, "exposure", ["low", "high"]).redim(low="overall_low", high="overall_high").opts(
        alpha=0.25, color=COLOURS[1], line_alpha=0)
    curve = hv.Curve(frame, "exposure", "effect", label="overall cumulative").redim(effect="overall").opts(
        color=COLOURS[1], line_width=2)
    reference = hv.HLine(1.0 if ratio else 0.0).opts(**REFERENCE_LINE)
    centre = hv.VLine(prediction.centre).opts(color=COLOURS[0], line_dash="dotted", line_width=1)
    return (band * curve * reference * centre).opts(
        width=WIDTH, height=HEIGHT, xlabel=exposure, ylabel=label, logy=False, show_grid=True,
        title=f"Overall cumulative effect, lags {int(prediction.lags.min())}-{int(prediction.lags.max())}, "
              f"against {prediction.centre:.3g}")


def lag_response(prediction, *, exposure: str = "exposure", outcome: str = "", role: str = "researcher"):
    """The lag-response at each exposure of ``prediction.at`` (at most 4 are drawn), with 95% bands."""
    _researcher(role, "the lag-response view")
    hv = holoviews_with_bokeh()
    frame = prediction.lag_frame()
    layers = []
    for colour, (value, part) in zip(COLOURS[1:] + COLOURS[:1], frame.groupby("exposure", sort=True)):
        part = part.rename(columns={"effect": "lag_effect", "low": "lag_low", "high": "lag_high"})
        layers.append(hv.Area(part, "lag", ["lag_low", "lag_high"]).opts(alpha=0.2, color=colour, line_alpha=0))
        layers.append(hv.Curve(part, "lag", "lag_effect", label=f"{exposure} {value:.3g}").opts(color=colour, line_width=2))
    layers.append(hv.HLine(1.0 if prediction.link == "log" else 0.0).opts(**REFERENCE_LINE))
    return hv.Overlay(layers).opts(width=WIDTH, height=HEIGHT, xlabel="lag (days)", show_grid=True, legend_position="top_right",
                        ylabel=outcome or ("relative risk" if prediction.link == "log" else "difference"),
                        title=f"Lag-response against {exposure} {prediction.centre:.3g}")


def surface(prediction, *, exposure: str = "exposure", role: str = "researcher"):
    """The exposure-lag-response surface: the lag-specific effect over exposure and lag, as a heat map."""
    _researcher(role, "the exposure-lag surface")
    hv = holoviews_with_bokeh()
    values = np.exp(prediction.lag_specific) if prediction.link == "log" else prediction.lag_specific
    frame = pd.DataFrame({"exposure": np.repeat(prediction.at, len(prediction.lags)),
                          "lag": np.tile(prediction.lags, len(prediction.at)), "lag_effect": values.ravel()})
    spread = float(np.nanmax(np.abs(np.log(values) if prediction.link == "log" else values))) or 1.0
    limits = (np.exp(-spread), np.exp(spread)) if prediction.link == "log" else (-spread, spread)
    return hv.HeatMap(frame, ["exposure", "lag"], "lag_effect").opts(
        width=WIDTH, height=HEIGHT, cmap="RdBu_r", colorbar=True, clim=limits, xlabel=exposure, ylabel="lag (days)",
        clabel="relative risk" if prediction.link == "log" else "effect at this lag",
        logz=prediction.link == "log", tools=["hover"], xrotation=45,
        title="Lag-specific effect by exposure and lag" + (" (relative risk)" if prediction.link == "log" else ""))


def survival_curves(km: pd.DataFrame, *, times=None, start: float = 0.0, time_label: str = "days", role: str = "researcher",
                    profile: str | None = None):
    """Kaplan-Meier curves (steps) with 95% bands and, below, the number at risk at ``times``.

    Parameters
    ----------
    km : pandas.DataFrame
        :func:`explorer.analysis.survival.kaplan_meier` output (with ``group`` for several curves).
    times : sequence of float, optional
        Times of the risk table (default: 6 evenly spaced from ``start``).
    start : float, default 0
        Where follow-up starts (the curves start there at 1).
    role : str
        ``public`` draws the released steps of :func:`explorer.privacy.survival.released_survival`
        under ``profile`` (default: the suite's default profile): merged steps whose counts are all
        clear, survival from those counts, no band, and the number at risk at each step's start.
    """
    import panel as pn

    if role == "public":
        return _public_survival(km, start, time_label, profile)
    _researcher(role, "the survival curves")

    hv = holoviews_with_bokeh()
    groups = km.groupby("group", sort=False) if "group" in km else [("all", km)]
    layers, risk_rows = [], []
    end = float(km.time.max())
    times = np.linspace(start, end, 6).round() if times is None else np.asarray(times, dtype=float)
    for colour, (name, part) in zip(COLOURS, groups):
        steps = _step_coordinates(part, start)
        layers.append(hv.Area(steps, "time", ["low", "high"]).redim(low="survival_low", high="survival_high").opts(
            alpha=0.15, color=colour, line_alpha=0))
        layers.append(hv.Curve(steps, "time", "survival", label=str(name)).opts(color=colour, line_width=2))
        risk_rows.append([str(name)] + [_at_risk(part, t) for t in times])
    plot = hv.Overlay(layers).opts(width=WIDTH, height=HEIGHT, ylim=(0, 1.02), xlim=(start, end), xlabel=time_label,
                                   ylabel="survival", show_grid=True, legend_position="bottom_left",
                                   title="Kaplan-Meier estimate (95% CI, log-log)")
    table = pd.DataFrame(risk_rows, columns=["group"] + [f"{t:g}" for t in times])
    return pn.Column(plot, pn.pane.Markdown("**Number at risk**"), static_table(table))


def _public_survival(km: pd.DataFrame, start: float, time_label: str, profile: str | None):
    import panel as pn

    from explorer.privacy.disclosure import default_profile, profile as get_profile
    from explorer.privacy.survival import released_survival

    hv = holoviews_with_bokeh()
    rules = get_profile(profile or default_profile())
    released = released_survival(km, rules, origin=start)
    if "group" not in released:
        released.insert(0, "group", "all")
    layers, risk_rows = [], []
    for colour, (name, part) in zip(COLOURS, released.groupby("group", sort=False)):
        ends = part.time.to_numpy(dtype=float)
        tail = ends[-1] + 0.04 * max(ends[-1] - start, 1.0)  # the last level drawn a little past its drop
        xs = np.r_[start, np.repeat(ends, 2), tail]
        values = np.r_[1.0, part.survival.to_numpy(dtype=float)]
        ys = np.r_[1.0, np.column_stack([values[:-1], values[1:]]).ravel(), values[-1]]
        layers.append(hv.Curve((xs, ys), "time", "survival", label=str(name)).opts(color=colour, line_width=2))
        risk_rows += [{"group": str(name), "from": f"{row.start:g}", "to": f"{row.time:g}", "at risk": f"{row.at_risk:,.0f}",
                       "events": f"{row.events:,.0f}", "censored": f"{row.censored:,.0f}"} for row in part.itertuples()]
    shown = sorted(set(km["group"]) if "group" in km else {"all"})
    missing = sorted(set(shown) - set(map(str, released.group)))
    note = (f"Steps merged until every count is clear of {rules.title}'s hidden range ({rules.label}); survival from "
            "the counts shown; a curve stops where fewer would remain at risk.")
    if missing:
        note += f" Not shown (no step of it has every count clear): {', '.join(missing)}."
    if not layers:
        return pn.Column(pn.pane.Markdown(f"**No survival curve can be shown.** {note}"))
    plot = hv.Overlay(layers).opts(width=WIDTH, height=HEIGHT, ylim=(0, 1.02), xlabel=time_label, ylabel="survival", show_grid=True,
                        legend_position="bottom_left", title=f"Survival, released under {rules.title}")
    return pn.Column(plot, pn.pane.Markdown(note), pn.pane.Markdown("**Released steps**"),
                     static_table(pd.DataFrame(risk_rows)))


def _step_coordinates(part: pd.DataFrame, start: float = 0.0) -> pd.DataFrame:
    """The corners of a right-continuous step function from 1 at ``start``: each step drawn flat
    until the next time, then straight down (an Area has no step interpolation)."""
    times = part.time.to_numpy(dtype=float)
    columns = {}
    for name in ("survival", "low", "high"):
        values = np.r_[1.0, part[name].fillna(part["survival"]).to_numpy(dtype=float)]
        columns[name] = np.r_[1.0, np.column_stack([values[:-1], values[1:]]).ravel()]
    return pd.DataFrame({"time": np.r_[start, np.repeat(times, 2)], **columns})


def _at_risk(part: pd.DataFrame, t: float) -> int:
    """Persons at risk at time ``t``: at risk at the first step at or after ``t`` (0 after the last)."""
    later = part[part.time >= t]
    return int(later.at_risk.iloc[0]) if len(later) else 0


def forest(table: pd.DataFrame, *, ratio: str = "hazard_ratio", role: str = "researcher"):
    """A forest plot: each term's ratio with its 95% CI on a log axis, a line at 1.

    Parameters
    ----------
    table : pandas.DataFrame
        Indexed by term, with ``ratio``, ``low`` and ``high`` (a Cox or case-crossover table).
    """
    _researcher(role, "the forest plot")
    hv = holoviews_with_bokeh()
    if not {ratio, "low", "high"} <= set(table.columns):
        raise ExplorerError(f"forest plot: the table needs columns {ratio}, low and high; it has {list(table.columns)}")
    frame = table.reset_index()
    frame = frame.rename(columns={frame.columns[0]: "term"})
    frame["row"] = np.arange(len(frame))[::-1]  # first term on top
    # one pair of dimensions for every layer, so they share one log-scaled axis
    segments = hv.Path([[(row.low, row.row), (row.high, row.row)] for row in frame.itertuples()],
                       kdims=["forest_ratio", "forest_row"]).opts(color="#333333", line_width=2)
    points = hv.Scatter(pd.DataFrame({"forest_ratio": frame[ratio], "forest_row": frame.row, "term": frame.term, "low": frame.low,
                                      "high": frame.high}), "forest_ratio", ["forest_row", "term", "low", "high"]).opts(
        size=9, color="#c0392b", tools=["hover"])
    one = hv.VLine(1.0).opts(**REFERENCE_LINE)
    low, high = float(np.nanmin(frame.low.clip(lower=1e-6))), float(np.nanmax(frame.high))
    low, high = min(low, 1.0) / 1.25, max(high, 1.0) * 1.25
    return (segments * points * one).opts(
        width=WIDTH, height=max(180, 80 + 45 * len(frame)), logx=True, xlim=(low, high), ylim=(-0.7, len(frame) - 0.3),
        yticks=list(zip(frame.row, frame.term)), xlabel=ratio.replace("_", " ") + " (95% CI, log scale)", ylabel="",
        title="Ratios by term", show_grid=True)


def dose_response(curve: pd.DataFrame, term: str, reference: float, *, label: str = "", role: str = "researcher"):
    """A spline dose-response: the hazard ratio of ``term`` against ``reference`` with its 95% band
    (:meth:`explorer.analysis.survival.CoxFit.dose_response`)."""
    _researcher(role, "the dose-response view")
    hv = holoviews_with_bokeh()
    curve = curve.rename(columns={"hazard_ratio": "dose_ratio", "low": "dose_low", "high": "dose_high"})
    band = hv.Area(curve, term, ["dose_low", "dose_high"]).opts(alpha=0.25, color=COLOURS[0], line_alpha=0)
    line = hv.Curve(curve, term, "dose_ratio").opts(color=COLOURS[0], line_width=2)
    return (band * line * hv.HLine(1.0).opts(**REFERENCE_LINE)).opts(
        width=WIDTH, height=HEIGHT, xlabel=label or term, ylabel="hazard ratio", show_grid=True,
        title=f"Hazard ratio against {reference:,.0f} (95% CI)")


def table_one_view(table: pd.DataFrame, *, role: str = "researcher"):
    """Table 1 as text: variable, level, statistic, one column per group, and the SMD. A public
    reader gets only a table made by :func:`explorer.privacy.table_one.released_table_one`."""
    if role == "public":
        if not any(c.endswith("|status") for c in table.columns):
            raise ExplorerError("a public Table 1 must be the disclosure-controlled release: "
                                "explorer.privacy.table_one.released_table_one(...)")
    else:
        _researcher(role, "Table 1")
    shown = [c for c in table.columns if "|" not in c]
    frame = table[shown].copy()
    frame["smd"] = frame["smd"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    return static_table(frame)
