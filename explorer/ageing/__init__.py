"""Longitudinal ageing markers: which markers change with age (``marker_ageing``), how fast each
person changes (a random intercept and slope per person, fitted from per-person sufficient
statistics: ``ageing_rates``), and the pathways along which a person ages fastest
(``pathway_scores``, ``ageotypes``)."""

from explorer.ageing.markers import ageotypes, ages, marker_ageing, marker_pathways, pathway_scores
from explorer.ageing.mixed import MixedFit, ageing_rates

__all__ = ["MixedFit", "ageing_rates", "ageotypes", "ages", "marker_ageing", "marker_pathways", "pathway_scores"]
