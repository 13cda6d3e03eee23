"""Views: Panel/HoloViews components that render the same object in a notebook and in a served
dashboard. Each is a ``param.Parameterized`` whose settings are parameters (with ``doc=``), whose
``data()`` returns exactly what reaches the browser (tested without a browser), and whose
``panel()`` lays it out.

Person-level views (one person's minutes, the actogram) are researcher-tier; the privacy layer
decides who may build them.
"""

from explorer.views.ageing import (AgeingRateDistribution, AgeotypeMembership, MarkerAgeingTable, MarkerTrajectories,
                                   PhenoAgeVsAge)
from explorer.views.catalog import CatalogOverview
from explorer.views.cohorts import CohortAttrition, CohortBuilder, CohortCharacterisation
from explorer.views.exposure import ExposureMap, ExposureResponse, HeatWaveCalendar
from explorer.views.federation import FederatedStudies
from explorer.views.overview import DataQualityReport, DemographicCounts, LakeSummary, ModalityCoverage
from explorer.lake import Lake  # what every view reads; dashboards annotate with it
from explorer.views.wearables import Actogram, CohortWearableDistributions, PersonMinutes, WearableTrends, downsample

__all__ = ["Actogram", "AgeingRateDistribution", "AgeotypeMembership", "CatalogOverview", "CohortAttrition", "CohortBuilder",
           "CohortCharacterisation", "DataQualityReport", "DemographicCounts", "LakeSummary", "MarkerAgeingTable", "ModalityCoverage",
           "WearableTrends", "CohortWearableDistributions", "ExposureMap",
           "ExposureResponse", "FederatedStudies", "HeatWaveCalendar", "Lake", "MarkerTrajectories", "PersonMinutes", "PhenoAgeVsAge", "downsample"]
