"""Longitudinal ageing markers: which markers change with age (``marker_ageing``), how fast each
person changes (a random intercept and slope per person, fitted from per-person sufficient
statistics: ``ageing_rates``), the pathways along which a person ages fastest
(``pathway_scores``, ``ageotypes``), and how old their blood says they are (``phenoage``,
``kdm_age``), with performance by subgroup (``subgroup_performance``)."""

from explorer.ageing.biological_age import (
    PHENOAGE_CONSTANT,
    acceleration,
    biological_age_performance,
    kdm_age,
    kdm_train,
    phenoage,
    subgroup_performance,
)
from explorer.ageing.markers import ageotypes, ages, marker_ageing, marker_pathways, pathway_scores
from explorer.ageing.mixed import MixedFit, ageing_rates

__all__ = ["PHENOAGE_CONSTANT", "MixedFit", "acceleration", "ageing_rates", "ageotypes", "ages",
           "biological_age_performance", "kdm_age", "kdm_train", "marker_ageing", "marker_pathways", "pathway_scores",
           "phenoage", "subgroup_performance"]
