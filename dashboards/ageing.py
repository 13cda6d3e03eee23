"""Ageing: the marker ageing table, ageotype membership and PhenoAge against age."""

from explorer.serve import guarded, page
from explorer.views import AgeotypeMembership, MarkerAgeingTable, PhenoAgeVsAge


def build(lake, role):
    return [guarded(lambda: MarkerAgeingTable(lake=lake, role=role)), guarded(lambda: AgeotypeMembership(lake=lake, role=role)),
            guarded(lambda: PhenoAgeVsAge(lake=lake, role=role))]


page("Ageing", build).servable(title="Ageing")
