"""Catalog and jobs: datasets, versions and lineage, refresh history, what changed between versions."""

from explorer.serve import guarded, page, url_synced
from explorer.views import CatalogOverview


def build(lake, role):
    view = CatalogOverview(lake=lake, role=role)
    widgets = [url_synced(view, ["table", "before", "after"])] if role != "public" else []
    return [*widgets, guarded(lambda: view)]


page("Catalog and jobs", build).servable(title="Catalog and jobs")
