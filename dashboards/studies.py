"""Studies: federated studies run from this lake (`explorer federate run --save`): the sites and how
each answered, the pooled results beside each site's, and their heterogeneity."""

from __future__ import annotations

import panel as pn

from explorer.serve import guarded, page
from explorer.views import Lake  # the type of build's lake
from explorer.views.federation import saved_studies, study_page

PAGE = {"title": "Studies", "order": 75, "roles": ["public", "researcher", "steward"],
        "summary": "federated studies across sites: which sites contributed, pooled and per-site results, I² and τ²"}


def build(lake: Lake, role):
    studies = saved_studies(lake)
    if studies.empty:
        return [pn.pane.Markdown("### No federated studies yet\nRun one with `explorer federate run study.yaml --save`; "
                                 "its sites, pooled results and heterogeneity appear here.")]
    labels = [f"{r.study} ({r.run_at:%Y-%m-%d %H:%M}, {r.sites_contributed}/{r.sites_asked} sites)" for r in studies.itertuples()]
    chooser = pn.widgets.Select(label="study run", options=dict(zip(labels, range(len(labels)))), value=0, width=420)
    shown = pn.bind(lambda k: guarded(lambda: study_page(studies["result"].iloc[k])), chooser)
    return [chooser, pn.panel(shown)]


page(PAGE, build).servable(title=PAGE["title"])
