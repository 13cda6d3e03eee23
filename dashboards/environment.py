"""Environment: the exposure map by date, the heat-wave calendar, the exposure-outcome relation."""

from __future__ import annotations

from explorer.serve import guarded, page, url_synced
from explorer.views import ExposureMap, ExposureResponse, HeatWaveCalendar
from explorer.views import Lake  # the type of build's lake


PAGE = {"title": "Environment", "order": 30, "roles": ["public", "researcher", "steward"],
        "summary": "heat-wave calendar and the exposure-outcome relation"}


def build(lake: Lake, role):
    exposure_map = ExposureMap(lake=lake, role=role)
    return [url_synced(exposure_map, ["variable", "date"]), guarded(lambda: exposure_map),
            guarded(lambda: HeatWaveCalendar(lake=lake, role=role)), guarded(lambda: ExposureResponse(lake=lake, role=role))]


page(PAGE, build).servable(title=PAGE["title"])
