"""Catalog and jobs: datasets, versions and lineage, refresh history, what changed between versions."""

from __future__ import annotations

from explorer.serve import guarded, page, url_synced
from explorer.views import CatalogOverview
from explorer.views import Lake  # the type of build's lake


PAGE = {"title": "Catalog and jobs", "order": 60, "roles": ["public", "researcher", "steward"],
        "summary": "datasets, their versions and lineage, refresh runs, and what changed between two versions"}


def build(lake: Lake, role):
    view = CatalogOverview(lake=lake, role=role)
    widgets = [url_synced(view, ["table", "before", "after"])] if role != "public" else []
    return [*widgets, guarded(lambda: view)]


page(PAGE, build).servable(title=PAGE["title"])
