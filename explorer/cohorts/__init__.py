"""Cohort definitions as data, compiled to one DuckDB query.

>>> from explorer import cohorts
>>> definition = cohorts.load("t2d.yaml")                  # doctest: +SKIP
>>> cohorts.count(lake, definition)                        # attrition, one query  # doctest: +SKIP
>>> cohorts.save(lake, definition)                         # materialised, with lineage  # doctest: +SKIP
>>> cohorts.members_of(lake, "t2d", version=3)             # the same people later  # doctest: +SKIP
>>> cohorts.characterise(lake, "t2d")                      # against the whole lake  # doctest: +SKIP
"""

from explorer.cohorts.characterise import characterise, person_features, standardised_mean_difference
from explorer.cohorts.compile import Compiled, compile_definition
from explorer.cohorts.definition import (
    CODE_SYSTEMS, CRITERIA, EXPOSURE_VARIABLES, WEARABLE_METRICS, All, AnyOf, Condition, Criterion, Definition,
    DefinitionError, Demographics, Exposure, IndexDate, Lab, Not, Range, Wearable, Window, from_dict, load, loads)
from explorer.cohorts.run import as_definition, count, flags, members
from explorer.cohorts.store import COHORT_INPUTS, delete, get, materialise_all, members_of, save, saved

__all__ = [
    "CODE_SYSTEMS", "COHORT_INPUTS", "CRITERIA", "EXPOSURE_VARIABLES", "WEARABLE_METRICS", "All", "AnyOf", "Compiled",
    "Condition", "Criterion", "Definition", "DefinitionError", "Demographics", "Exposure", "IndexDate", "Lab", "Not",
    "Range", "Wearable", "Window", "as_definition", "characterise", "compile_definition", "count", "delete", "flags", "from_dict",
    "get", "load", "loads", "materialise_all", "members", "members_of", "person_features", "save", "saved",
    "standardised_mean_difference",
]
