"""Cohorts: the builder, with live attrition (protected for the public role)."""

from explorer.serve import page
from explorer.views import CohortBuilder


def build(lake, role):
    return [CohortBuilder(lake=lake, role=role).panel()]


page("Cohorts", build).servable(title="Cohorts")
