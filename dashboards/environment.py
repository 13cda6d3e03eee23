"""Environment: heat-wave calendar and the exposure-outcome relation."""

from explorer.serve import guarded, page
from explorer.views import ExposureResponse, HeatWaveCalendar


def build(lake, role):
    return [guarded(lambda: HeatWaveCalendar(lake=lake, role=role)), guarded(lambda: ExposureResponse(lake=lake, role=role))]


page("Environment", build).servable(title="Environment")
