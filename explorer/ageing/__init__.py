"""Longitudinal ageing markers: which markers change with age, how fast each person changes
(a random intercept and slope per person, fitted from per-person sufficient statistics)."""

from explorer.ageing.mixed import MixedFit, ageing_rates

__all__ = ["MixedFit", "ageing_rates"]
