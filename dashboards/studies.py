"""Studies: federated studies run from this lake (`explorer federate run --save`): the sites and how
each answered, the pooled results beside each site's, and their heterogeneity."""

from __future__ import annotations

import panel as pn

from explorer.serve import guarded, page, url_synced
from explorer.views import FederatedStudies
from explorer.views import Lake  # the type of build's lake

PAGE = {"title": "Studies", "order": 75, "roles": ["public", "researcher", "steward"],
        "summary": "federated studies across sites: which sites contributed, pooled and per-site results, I² and τ²"}


def build(lake: Lake, role):
    view = FederatedStudies(lake=lake, role=role)
    return [url_synced(view, ["run"]), guarded(lambda: view)]


page(PAGE, build).servable(title=PAGE["title"])
