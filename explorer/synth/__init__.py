"""Synthetic multi-modal cohort with planted ground truth, written as real sources deliver it.

This package writes raw files only and imports nothing of the lake, so it stands in fairly for
an outside source. ``explorer synth --participants N --days D --seed S --out DIR``.
"""

from explorer.synth.config import Region, SynthConfig
from explorer.synth.generate import SynthSummary, generate

__all__ = ["Region", "SynthConfig", "SynthSummary", "generate"]
