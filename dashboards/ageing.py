"""Ageing: the marker ageing table, ageotype membership and PhenoAge against age."""

from __future__ import annotations

from explorer.serve import guarded, page
from explorer.views import AgeotypeMembership, MarkerAgeingTable, PhenoAgeVsAge
from explorer.views import Lake  # the type of build's lake


PAGE = {"title": "Ageing", "order": 40, "roles": ["public", "researcher", "steward"],
        "summary": "markers that change with age, ageotype membership and PhenoAge against age"}


def build(lake: Lake, role):
    return [guarded(lambda: MarkerAgeingTable(lake=lake, role=role)), guarded(lambda: AgeotypeMembership(lake=lake, role=role)),
            guarded(lambda: PhenoAgeVsAge(lake=lake, role=role))]


page(PAGE, build).servable(title=PAGE["title"])
