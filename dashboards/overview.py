"""Cohort overview: persons by age band, sex, race, ethnicity and ZIP3; data per modality; data quality."""

from __future__ import annotations

import panel as pn

from explorer.serve import csv_download, guarded, page, url_synced
from explorer.views import DataQualityReport, DemographicCounts, ModalityCoverage
from explorer.views import Lake  # the type of build's lake


PAGE = {"title": "Cohort overview", "order": 10, "roles": ["public", "researcher", "steward"],
        "summary": "who is in the lake: persons by age band, sex, race, ethnicity and ZIP3"}


def build(lake: Lake, role):
    counts = DemographicCounts(lake=lake, role=role)
    return [url_synced(counts, ["by", "sex_at_birth"]), guarded(lambda: counts), pn.panel(counts.table),
            csv_download(counts, "persons.csv"), pn.pane.Markdown("### Data per modality"),
            guarded(lambda: ModalityCoverage(lake=lake, role=role)), guarded(lambda: DataQualityReport(lake=lake, role=role))]


page(PAGE, build).servable(title=PAGE["title"])
